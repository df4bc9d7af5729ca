/**
 * The counter of requests (or jobs) in flight and its FIFO wait queue, shared by the online
 * lane's admission middleware (api/middleware/shed.ts) and the bulk lane's (lane/admission.ts);
 * plus the event-loop lag sampler the online lane uses.
 */
import type { Registry } from "prom-client";

/** Settings of {@link Admission}. */
export interface AdmissionOptions {
  /** Requests processed at once; 0: unlimited (no queue either). */
  maxInFlight: number;
  /** Requests waiting for a slot at most. */
  maxQueue: number;
  /** Longest wait for a slot, ms. */
  queueTimeoutMs: number;
  /** Deadline of a request from arrival, ms; 0: none. */
  requestTimeoutMs: number;
  /** Event-loop lag above which new requests are refused, ms; 0: not watched. */
  maxLagMs: number;
  /** Seconds sent in `Retry-After` with a 503. */
  retryAfterSeconds?: number;
}

/** How often the event-loop lag is sampled while requests arrive, ms. */
const LAG_SAMPLE_MS = 20;
/**
 * Requests that may arrive during one late stretch of the event loop before the newcomers are
 * refused: a few clients sending heavy requests at once are served; a flood is not.
 */
const LAG_BACKLOG = 8;
/** The lag sampler stops after this long without a request, ms. */
const LAG_IDLE_MS = 2000;

interface Waiter {
  resolve: (admitted: boolean) => void;
  timer: ReturnType<typeof setTimeout>;
  done: boolean;
}

/** The in-flight counter and its wait queue (one per process). */
export class Admission {
  inFlight = 0;
  /** Requests waiting for a slot now. */
  queued = 0;
  /** FIFO of waiters from `head` on; timed-out ones stay (marked done) until reached. */
  private readonly waiters: Waiter[] = [];
  private head = 0;
  /** Lag measured at the last sample, ms. */
  private lastLag = 0;
  /** When the next sample is due (performance.now()). */
  private nextSample = 0;
  /** Requests seen since the last sample. */
  private arrivals = 0;
  private lastRequest = 0;
  private sampler: ReturnType<typeof setInterval> | undefined;

  constructor(readonly o: AdmissionOptions) {}

  /**
   * Event-loop lag now, ms: how late the last sample ran, or how overdue the next one is (a
   * loop that has been busy for that long is noticed before the sample gets to run).
   */
  lagMs(now = performance.now()): number {
    if (this.sampler === undefined) return 0;
    return Math.max(this.lastLag, now - this.nextSample);
  }

  /**
   * True when a request arrives while the event loop runs more than `maxLagMs` late *and*
   * more than {@link LAG_BACKLOG} requests arrived since the last sample: a backlog built up
   * while the loop was busy. (A few clients sending slow requests make the loop late too, but
   * queue little.) Starts the sampler, which runs only while requests arrive.
   */
  lagging(): boolean {
    if (this.o.maxLagMs <= 0) return false;
    const now = performance.now();
    this.lastRequest = now;
    this.arrivals++;
    if (this.sampler === undefined) this.startSampler(now);
    return this.arrivals > LAG_BACKLOG && this.lagMs(now) > this.o.maxLagMs;
  }

  private startSampler(now: number): void {
    this.nextSample = now + LAG_SAMPLE_MS;
    this.lastLag = 0;
    this.sampler = setInterval(() => {
      const t = performance.now();
      this.lastLag = Math.max(0, t - this.nextSample);
      this.nextSample = t + LAG_SAMPLE_MS;
      this.arrivals = 0;
      if (t - this.lastRequest > LAG_IDLE_MS) {
        clearInterval(this.sampler);
        this.sampler = undefined;
        this.lastLag = 0;
      }
    }, LAG_SAMPLE_MS);
    this.sampler.unref?.();
  }

  /** Takes a slot if one is free and nobody waits for one. */
  tryAcquire(): boolean {
    if (this.o.maxInFlight <= 0) return true;
    if (this.inFlight < this.o.maxInFlight && this.queued === 0) {
      this.inFlight++;
      return true;
    }
    return false;
  }

  /**
   * Waits up to `ms` for a slot. Resolves false at once when the queue is full, or when the
   * wait times out.
   */
  wait(ms: number): Promise<boolean> {
    if (this.tryAcquire()) return Promise.resolve(true);
    if (this.queued >= this.o.maxQueue || ms <= 0) return Promise.resolve(false);
    this.queued++;
    return new Promise<boolean>((resolve) => {
      const w: Waiter = {
        resolve,
        done: false,
        timer: setTimeout(() => {
          // Left in the array (skipped when reached): removal from the middle is O(n).
          w.done = true;
          this.queued--;
          resolve(false);
          this.compact();
        }, ms),
      };
      this.waiters.push(w);
    });
  }

  /** Returns a slot: handed to the oldest live waiter, else freed. */
  release(): void {
    if (this.o.maxInFlight <= 0) return;
    while (this.head < this.waiters.length) {
      const w = this.waiters[this.head++] as Waiter;
      if (w.done) continue;
      w.done = true;
      this.queued--;
      clearTimeout(w.timer);
      this.compact();
      w.resolve(true); // the slot passes to it: inFlight unchanged
      return;
    }
    this.compact();
    this.inFlight--;
  }

  /** Drops consumed and timed-out entries from the front of the queue. */
  private compact(): void {
    while (this.head < this.waiters.length && (this.waiters[this.head] as Waiter).done) this.head++;
    if (this.head > 1024 && this.head * 2 > this.waiters.length) {
      this.waiters.splice(0, this.head);
      this.head = 0;
    } else if (this.head === this.waiters.length) {
      this.waiters.length = 0;
      this.head = 0;
    }
  }
}

/** The metric `name` of `registry`, created by `create` the first time (one set per registry, several apps per process in tests). */
export function metricOf<T>(registry: Registry, name: string, create: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? create();
}
