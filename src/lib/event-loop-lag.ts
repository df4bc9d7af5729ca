/**
 * How late the event loop runs, sampled only while requests arrive, and whether a backlog built
 * up while it was busy: the online lane's admission middleware (api/middleware/shed.ts) refuses
 * newcomers then. Requests that pile up in socket buffers while the loop is busy on the CPU are
 * seen by no in-flight counter; lag is their symptom.
 *
 * Lag alone is not overload: the loop is also late when this thread did not run at all (the
 * machine's other threads had the CPU: the bulk lane's, other processes), or after one pause
 * (a garbage collection). The requests that piled up then are answered as cheaply as they
 * would be refused, so they are only refused when this thread itself was on the CPU for at
 * least half of the last second: its own work is what it cannot keep up with.
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
/** The stretch over which this thread's CPU time is compared with the wall clock, ms (at least). */
const BUSY_WINDOW_MS = 1000;
/** Share of that stretch this thread must have spent on the CPU for a late loop to count as overload. */
const BUSY_SHARE = 0.5;
/** Samples of this thread's CPU time kept (one per sample, every SAMPLE_MS). */
const CPU_SAMPLES = Math.ceil(BUSY_WINDOW_MS / SAMPLE_MS) + 2;

/** CPU time this thread has used, microseconds. */
const threadCpuMicros = (): number => {
  const u = process.threadCpuUsage();
  return u.user + u.system;
};

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
  /** Ring of (wall ms, this thread's CPU us) at each sample, oldest first from `cpuHead`. */
  private readonly cpuAt = new Float64Array(CPU_SAMPLES * 2);
  private cpuHead = 0;
  private cpuCount = 0;

  /**
   * @param maxLagMs lag above which a backlog is refused, ms; 0: not watched (never refuses, never samples).
   * @param cpuMicros CPU time of the thread answering requests, microseconds (this thread's)
   */
  constructor(
    readonly maxLagMs: number,
    private readonly cpuMicros: () => number = threadCpuMicros,
  ) {}

  private recordCpu(at: number): void {
    const i = ((this.cpuHead + this.cpuCount) % CPU_SAMPLES) * 2;
    this.cpuAt[i] = at;
    this.cpuAt[i + 1] = this.cpuMicros();
    if (this.cpuCount < CPU_SAMPLES) this.cpuCount++;
    else this.cpuHead = (this.cpuHead + 1) % CPU_SAMPLES;
  }

  /**
   * Share of the wall clock this thread spent on the CPU from the newest sample at least
   * BUSY_WINDOW_MS old (the oldest one, when the sampler started later) until now.
   */
  busyShare(now = performance.now()): number {
    if (this.cpuCount === 0) return 0;
    let k = this.cpuCount - 1;
    while (k > 0 && now - (this.cpuAt[((this.cpuHead + k) % CPU_SAMPLES) * 2] as number) < BUSY_WINDOW_MS) k--;
    const i = ((this.cpuHead + k) % CPU_SAMPLES) * 2;
    const wallMs = now - (this.cpuAt[i] as number);
    if (wallMs <= 0) return 0;
    return (this.cpuMicros() - (this.cpuAt[i + 1] as number)) / 1000 / wallMs;
  }

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
   * `maxLagMs` late, more than {@link BACKLOG} requests arrived since the last sample (a few
   * clients sending slow requests make the loop late too, but queue little), *and* this thread
   * was on the CPU for at least half of the last second ({@link busyShare}): a backlog
   * built up while the thread was busy with its own work. Starts the sampler, which runs only
   * while requests arrive. `now`: the request's arrival (performance.now()), when the caller has read it.
   */
  backlogged(now = performance.now()): boolean {
    if (this.maxLagMs <= 0) return false;
    this.lastRequest = now;
    this.arrivals++;
    if (this.sampler === undefined) this.start(now);
    return this.arrivals > BACKLOG && this.lagMs(now) > this.maxLagMs && this.busyShare(now) >= BUSY_SHARE;
  }

  private start(now: number): void {
    this.nextSample = now + SAMPLE_MS;
    this.lastLag = 0;
    this.cpuCount = 0;
    this.recordCpu(now);
    this.sampler = setInterval(() => {
      const t = performance.now();
      this.recordCpu(t);
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
