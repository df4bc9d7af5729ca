/**
 * The counter of requests (or jobs) in flight and its FIFO wait queue, shared by the online
 * lane's admission middleware (api/middleware/shed.ts) and the bulk lane's (lane/admission.ts).
 */

/** Settings of {@link Admission}. */
export interface AdmissionOptions {
  /** Requests processed at once; 0: unlimited (no queue either). */
  maxInFlight: number;
  /** Requests waiting for a slot at most. */
  maxQueue: number;
  /** Longest wait for a slot, ms. */
  queueTimeoutMs: number;
}

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

  constructor(readonly options: AdmissionOptions) {}

  /** Takes a slot if one is free and nobody waits for one. */
  tryAcquire(): boolean {
    if (this.options.maxInFlight <= 0) return true;
    if (this.inFlight < this.options.maxInFlight && this.queued === 0) {
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
    if (this.queued >= this.options.maxQueue || ms <= 0) return Promise.resolve(false);
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
    if (this.options.maxInFlight <= 0) return;
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
    } else if (this.head === this.waiters.length && this.head !== 0) {
      // (an empty queue is left alone: writing an array's length is a call into the runtime)
      this.waiters.length = 0;
      this.head = 0;
    }
  }
}
