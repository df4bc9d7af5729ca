/**
 * One store statement at a time per bulk-lane thread: the thread's offline-store calls
 * (point-in-time lookups, history reads, writes) wait their turn in FIFO order.
 *
 * Why: a training query and a bulk write admitted together ran on two PostgreSQL backends at
 * once, each taking a whole core for seconds at the database's priority, while the thread
 * answering online lookups needs a core within a fraction of a millisecond whenever a request
 * comes in. With the database on the same machine (2 cores here) that left online requests
 * waiting for the CPU. Through the gate the lane's database work, like its own, runs on at most
 * one core per lane thread (BULK_WORKERS, half the cores by default); jobs still interleave
 * between statements (a write runs between two chunks of a long training query, which reads
 * one chunk per statement). A call's own timeout starts when its turn comes, so waiting behind
 * another job's statement never makes it time out.
 */
import type { OfflineStore } from "../store/types.ts";

/** A FIFO gate letting `limit` holders through at once. */
export class Gate {
  private held = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly limit: number) {
    if (!(limit >= 1)) throw new Error(`gate limit must be >= 1, got ${limit}`);
  }

  /** Holders now, and callers waiting (for tests and metrics). */
  get state(): { held: number; waiting: number } {
    return { held: this.held, waiting: this.waiting.length };
  }

  /** Runs `fn` once a place is free; the place is given to the next waiter when it settles. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.held < this.limit) this.held++;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      // the place passes straight to the next waiter (held stays the same)
      if (next) next();
      else this.held--;
    }
  }
}

/**
 * `store`'s offline role with its statements (writes, latest, point-in-time and history reads)
 * taken through `gate`.
 */
export function gateOffline(store: OfflineStore, gate: Gate): OfflineStore {
  return {
    writeValues: (rows) => gate.run(() => store.writeValues(rows)),
    getLatest: (keys) => gate.run(() => store.getLatest(keys)),
    getAsOf: (keys) => gate.run(() => store.getAsOf(keys)),
    getHistory: (featureIds, entityIds, upTo, limit) => gate.run(() => store.getHistory(featureIds, entityIds, upTo, limit)),
    ping: () => store.ping(),
    close: () => store.close(),
  };
}
