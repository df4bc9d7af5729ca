/**
 * How late the event loop runs, sampled only while requests arrive, and whether a backlog built
 * up while it was busy: the online lane's admission middleware (api/middleware/shed.ts) refuses
 * newcomers then. Requests that pile up in socket buffers while the loop is busy on the CPU are
 * seen by no in-flight counter; lag is their symptom.
 */

/** How often the event-loop lag is sampled while requests arrive, ms. */
const SAMPLE_MS = 20;
/**
 * Requests that may arrive during one late stretch of the event loop before the newcomers are
 * refused: a few clients sending heavy requests at once are served; a flood is not.
 */
const BACKLOG = 8;
/** The sampler stops after this long without a request, ms. */
const IDLE_MS = 2000;

/** The event-loop lag sampler (one per process). */
export class EventLoopLag {
  /** Lag measured at the last sample, ms. */
  private lastLag = 0;
  /** When the next sample is due (performance.now()). */
  private nextSample = 0;
  /** Requests seen since the last sample. */
  private arrivals = 0;
  private lastRequest = 0;
  private sampler: ReturnType<typeof setInterval> | undefined;

  /** @param maxLagMs lag above which a backlog is refused, ms; 0: not watched (never refuses, never samples). */
  constructor(readonly maxLagMs: number) {}

  /**
   * Event-loop lag now, ms: how late the last sample ran, or how overdue the next one is (a
   * loop that has been busy for that long is noticed before the sample gets to run). 0 while
   * the sampler is stopped.
   */
  lagMs(now = performance.now()): number {
    if (this.sampler === undefined) return 0;
    return Math.max(this.lastLag, now - this.nextSample);
  }

  /**
   * Records an arriving request. True when it arrives while the event loop runs more than
   * `maxLagMs` late *and* more than {@link BACKLOG} requests arrived since the last sample: a
   * backlog built up while the loop was busy. (A few clients sending slow requests make the
   * loop late too, but queue little.) Starts the sampler, which runs only while requests arrive.
   */
  backlogged(): boolean {
    if (this.maxLagMs <= 0) return false;
    const now = performance.now();
    this.lastRequest = now;
    this.arrivals++;
    if (this.sampler === undefined) this.start(now);
    return this.arrivals > BACKLOG && this.lagMs(now) > this.maxLagMs;
  }

  private start(now: number): void {
    this.nextSample = now + SAMPLE_MS;
    this.lastLag = 0;
    this.sampler = setInterval(() => {
      const t = performance.now();
      this.lastLag = Math.max(0, t - this.nextSample);
      this.nextSample = t + SAMPLE_MS;
      this.arrivals = 0;
      if (t - this.lastRequest > IDLE_MS) {
        clearInterval(this.sampler);
        this.sampler = undefined;
        this.lastLag = 0;
      }
    }, SAMPLE_MS);
    this.sampler.unref?.();
  }
}
