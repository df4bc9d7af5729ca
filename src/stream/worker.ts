/**
 * The stream worker's loop: records from an {@link EventSource} are gathered into batches (up
 * to `batchSize` records, or whatever arrived within `batchWaitMs` of the first one), and each
 * batch is, in this order:
 *
 *   1. validated and stored (one database transaction), retried with backoff while a store
 *      is unavailable, consumption paused meanwhile. A failure that is not a store outage (a
 *      bug, a value a backend refuses) would fail the same way every time: the batch is split
 *      in halves until the failing records are alone, and those are dead-lettered with
 *      `error-code: internal` and what failed, so the partitions move on;
 *   2. its invalid records written to the dead-letter sink (acknowledged by all in-sync
 *      replicas), retried the same way;
 *   3. its offsets committed.
 *
 * A step still failing after `retryLimitMs` ends the worker (`failed` resolves; the process
 * exits non-zero for its supervisor to restart it) instead of stalling its partitions unseen.
 *
 * So an offset is committed only after everything before it is stored or dead-lettered, and
 * a crash at any point redelivers at most the uncommitted batches, which storage recognises as
 * identical re-sends: every event ends up stored exactly once.
 *
 * Fetching goes on while a batch is being stored (up to two batches wait in memory), so the
 * database and the broker work in parallel.
 */
import { AppError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { isStoreUnavailable } from "../store/errors.ts";
import type { Clock } from "../lib/time.ts";
import type { WorkerMetrics } from "../metrics.ts";
import { processBatch, type BatchOutcome, type ProcessContext } from "./process.ts";
import type { DeadLetterSink, EventSource, PartitionOffset, SourceRecord } from "./source.ts";

/** Options of {@link StreamWorker}. */
export interface StreamWorkerOptions {
  source: EventSource;
  dlq: DeadLetterSink;
  process: ProcessContext;
  metrics: WorkerMetrics;
  log: Logger;
  clock: Clock;
  /** most records per batch */
  batchSize: number;
  /** longest a record waits for its batch to fill, ms */
  batchWaitMs: number;
  /** first and longest pause between retries of a failed step, ms */
  backoff?: { initialMs: number; maxMs: number };
  /** longest a step may keep failing before the worker gives up (default 10 minutes), ms */
  retryLimitMs?: number;
}

/** Longest `error-detail` of a record dead-lettered because storing it failed, characters. */
const MAX_FAILURE_DETAIL = 1000;

/** True for a failure that may pass by itself (a store outage), worth retrying as it is. */
export function isTransient(err: unknown): boolean {
  return isStoreUnavailable(err) || (err instanceof AppError && err.code === "unavailable");
}

/** What failed, for the `error-detail` of a record that cannot be stored. */
function failureDetail(err: unknown): string {
  const cause = err instanceof AppError && err.cause !== undefined ? err.cause : err;
  const text = `storing this record failed: ${cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause)}`;
  return text.length > MAX_FAILURE_DETAIL ? `${text.slice(0, MAX_FAILURE_DETAIL - 1)}…` : text;
}

function merge(a: BatchOutcome, b: BatchOutcome): BatchOutcome {
  return {
    letters: [...a.letters, ...b.letters],
    stored: a.stored + b.stored,
    duplicates: a.duplicates + b.duplicates,
    storedEventTimes: [...a.storedEventTimes, ...b.storedEventTimes],
  };
}

/** Resolves waiters when `notify()` is called or after their own timeout, whichever comes first. */
class Wakeup {
  private readonly waiters = new Set<() => void>();

  wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waiters.add(done);
    });
  }

  notify(): void {
    for (const w of [...this.waiters]) w();
  }
}

const tpKey = (topic: string, partition: number) => `${topic}\u0000${partition}`;

/** Consumes, stores, dead-letters and commits; see the module comment for the guarantees. */
export class StreamWorker {
  private readonly pending: SourceRecord[] = [];
  private firstPendingAt = 0;
  private readonly wake = new Wakeup();
  private readonly space = new Wakeup();
  /** wakes retry backoffs when the shutdown deadline passes */
  private readonly abort = new Wakeup();
  private stopping = false;
  /** set when the shutdown deadline passed: retries end, nothing more is committed */
  private abandoned = false;
  private pausedForRetry = false;
  private loop: Promise<void> | undefined;
  /** the commit in flight (at most one; the next waits for it) */
  private committing: Promise<void> = Promise.resolve();
  /** stored but not yet committed positions (a failed commit is retried with the next batch) */
  private readonly uncommitted = new Map<string, PartitionOffset>();
  private readonly assigned = new Set<string>();
  private readonly highWatermarks = new Map<string, bigint>();
  /** next offset to process per partition (committed, or first delivered) */
  private readonly positions = new Map<string, bigint>();
  private fatal: ((err: unknown) => void) | undefined;
  /** resolves with an error when the source failed for good, or a step kept failing past `retryLimitMs` */
  readonly failed: Promise<unknown>;

  constructor(private readonly opts: StreamWorkerOptions) {
    this.failed = new Promise((resolve) => (this.fatal = resolve));
  }

  /** Starts consuming; resolves once the source is running. */
  async start(): Promise<void> {
    this.loop = this.run();
    await this.opts.source.start({
      onRecords: (records, hw, active) => this.accept(records, hw, active),
      onAssignment: (partitions) => this.onAssignment(partitions),
      onFatal: (err) => this.fatal?.(err),
    });
  }

  /**
   * Graceful stop: takes no new records, stores and commits what it holds (the batch in hand
   * and the records waiting for the next one), then leaves the group. After `deadlineMs` an
   * unfinished batch is abandoned uncommitted (it will be redelivered).
   */
  async stop(deadlineMs: number): Promise<void> {
    this.stopping = true;
    this.opts.source.pause();
    this.wake.notify();
    this.space.notify();
    const timer = setTimeout(() => {
      this.abandoned = true;
      this.wake.notify();
      this.abort.notify();
    }, deadlineMs);
    try {
      await this.loop;
      await this.committing;
    } finally {
      clearTimeout(timer);
    }
    await this.opts.source.stop();
    await this.opts.dlq.close();
  }

  /** Records delivered by the source: taken while there is room, else waits for room. */
  private async accept(records: SourceRecord[], highWatermark: bigint, active: () => boolean): Promise<{ accepted: number }> {
    const first = records[0];
    if (!first) return { accepted: 0 };
    const key = tpKey(first.topic, first.partition);
    this.highWatermarks.set(key, highWatermark);
    if (!this.positions.has(key)) this.positions.set(key, first.offset);
    this.updateLag(first.topic, first.partition);
    const capacity = this.opts.batchSize * 2;
    let accepted = 0;
    while (accepted < records.length) {
      if (this.stopping || !active()) break;
      const room = capacity - this.pending.length;
      if (room <= 0) {
        await this.space.wait(200);
        continue;
      }
      const take = records.slice(accepted, accepted + room);
      if (this.pending.length === 0) this.firstPendingAt = this.opts.clock.now();
      this.pending.push(...take);
      accepted += take.length;
      this.wake.notify();
    }
    return { accepted };
  }

  private onAssignment(partitions: { topic: string; partition: number }[]): void {
    const now = new Set(partitions.map((p) => tpKey(p.topic, p.partition)));
    for (const key of this.assigned) {
      if (now.has(key)) continue;
      const [topic = "", partition = ""] = key.split("\u0000");
      this.opts.metrics.lag.remove({ topic, partition });
      this.uncommitted.delete(key);
    }
    this.assigned.clear();
    for (const k of now) this.assigned.add(k);
    // Positions restart from the committed offsets after a rejoin; records of partitions we
    // lost would be stored again by their new owner, so they are not worth storing here.
    const kept = this.pending.filter((r) => now.has(tpKey(r.topic, r.partition)));
    this.pending.length = 0;
    this.pending.push(...kept);
    this.positions.clear();
    this.space.notify();
  }

  private async run(): Promise<void> {
    const { batchSize, batchWaitMs, clock } = this.opts;
    for (;;) {
      if (this.abandoned) return;
      if (this.pending.length === 0) {
        if (this.stopping) return;
        await this.wake.wait(1_000);
        continue;
      }
      const waited = clock.now() - this.firstPendingAt;
      if (this.pending.length < batchSize && waited < batchWaitMs && !this.stopping) {
        await this.wake.wait(batchWaitMs - waited);
        continue;
      }
      const batch = this.pending.splice(0, batchSize);
      this.firstPendingAt = clock.now();
      this.space.notify();
      await this.handle(batch);
    }
  }

  /** Store, dead-letter, commit; each step retried until it succeeds or the worker is abandoned. */
  private async handle(batch: SourceRecord[]): Promise<void> {
    const { metrics, log, dlq } = this.opts;
    const started = performance.now();
    const outcome = await this.store(batch);
    if (outcome === undefined) return;
    if (outcome.letters.length > 0) {
      const sent = await this.retry("dlq", async () => {
        await dlq.send(outcome.letters);
        return true;
      });
      if (sent === undefined) return;
    }
    this.resumeAfterRetry();
    this.record(outcome, batch.length);

    const offsets = new Map<string, PartitionOffset>();
    for (const r of batch) offsets.set(tpKey(r.topic, r.partition), { topic: r.topic, partition: r.partition, offset: r.offset + 1n });
    // A partition revoked meanwhile belongs to another member now; its commit is theirs.
    for (const [k, o] of offsets) if (this.assigned.size === 0 || this.assigned.has(k)) this.uncommitted.set(k, o);
    // The commit round trip overlaps the next batch's validation and write (one commit in
    // flight at a time, so they stay in order); each covers only batches already stored.
    await this.committing;
    this.committing = (async () => {
      await this.commit();
      metrics.batchDuration.observe((performance.now() - started) / 1000);
    })();
    if (this.stopping) await this.committing;
    if (outcome.letters.length > 0) log.debug({ dlq: outcome.letters.length }, "invalid messages sent to the dead-letter topic");
  }

  private record(outcome: BatchOutcome, size: number): void {
    const { metrics, clock } = this.opts;
    metrics.batchSize.observe(size);
    if (outcome.stored > 0) metrics.messages.inc({ outcome: "stored" }, outcome.stored);
    if (outcome.duplicates > 0) metrics.messages.inc({ outcome: "duplicate" }, outcome.duplicates);
    if (outcome.letters.length > 0) metrics.messages.inc({ outcome: "dlq" }, outcome.letters.length);
    const now = clock.now();
    for (const t of outcome.storedEventTimes) metrics.freshness.observe(Math.max(0, now - t) / 1000);
  }

  /**
   * Commits every stored position. A failure (typically a rebalance) is logged and the
   * positions are kept for the next commit; nothing is lost, as redelivered records are
   * recognised as re-sends.
   */
  private async commit(): Promise<void> {
    if (this.uncommitted.size === 0) return;
    const offsets = [...this.uncommitted.values()];
    try {
      await this.opts.source.commit(offsets);
      for (const o of offsets) {
        const k = tpKey(o.topic, o.partition);
        if (this.uncommitted.get(k) === o) this.uncommitted.delete(k);
        this.positions.set(k, o.offset);
        this.updateLag(o.topic, o.partition);
      }
    } catch (err) {
      this.opts.metrics.retries.inc({ stage: "commit" });
      this.opts.log.warn({ err }, "offset commit failed; it is retried with the next batch");
    }
  }

  private updateLag(topic: string, partition: number): void {
    const k = tpKey(topic, partition);
    const hw = this.highWatermarks.get(k);
    const pos = this.positions.get(k);
    if (hw === undefined || pos === undefined) return;
    const lag = hw > pos ? hw - pos : 0n;
    this.opts.metrics.lag.set({ topic, partition: String(partition) }, Number(lag));
  }

  /**
   * Validates and stores records, retrying store outages. A failure of another kind isolates
   * the records that cause it by bisection (halves stored in offset order) and turns each into
   * a dead letter (`internal`). Undefined when the worker stopped or gave up meanwhile.
   */
  private async store(records: SourceRecord[]): Promise<BatchOutcome | undefined> {
    try {
      return await this.retry("store", () => processBatch(this.opts.process, records));
    } catch (err) {
      const first = records[0] as SourceRecord;
      if (records.length === 1) {
        this.opts.log.error({ err, topic: first.topic, partition: first.partition, offset: String(first.offset) }, "storing a record fails every time; it goes to the dead-letter topic");
        return { letters: [{ record: first, code: "internal", detail: failureDetail(err) }], stored: 0, duplicates: 0, storedEventTimes: [] };
      }
      this.opts.log.warn({ err, records: records.length }, "storing a batch failed, not for a store outage; splitting it to find the failing records");
      const mid = Math.ceil(records.length / 2);
      const a = await this.store(records.slice(0, mid));
      if (a === undefined) return undefined;
      const b = await this.store(records.slice(mid));
      return b === undefined ? undefined : merge(a, b);
    }
  }

  /**
   * Runs `step` until it succeeds, pausing consumption while it fails, with exponential
   * backoff and jitter. Returns undefined when the shutdown deadline ended the retries, or
   * when the failure lasted past `retryLimitMs` (the worker then fails). A `store` failure
   * that is not transient is thrown at once: retrying would fail the same way.
   */
  private async retry<T>(stage: "store" | "dlq", step: () => Promise<T>): Promise<T | undefined> {
    const { initialMs, maxMs } = this.opts.backoff ?? { initialMs: 200, maxMs: 10_000 };
    const limitMs = this.opts.retryLimitMs ?? 600_000;
    const since = performance.now();
    for (let attempt = 0; ; attempt++) {
      if (this.abandoned) return undefined;
      try {
        return await step();
      } catch (err) {
        if (this.abandoned) return undefined;
        if (stage === "store" && !isTransient(err)) throw err;
        if (performance.now() - since >= limitMs) {
          this.opts.log.error({ err, stage, attempts: attempt + 1 }, `${stage === "store" ? "storing" : "dead-lettering"} has failed for ${Math.round(limitMs / 1000)} s; giving up`);
          this.abandoned = true;
          this.fatal?.(err);
          return undefined;
        }
        this.opts.metrics.retries.inc({ stage });
        if (!this.pausedForRetry) {
          this.pausedForRetry = true;
          this.opts.source.pause();
        }
        const delay = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 16));
        const jittered = Math.round(delay / 2 + Math.random() * (delay / 2));
        this.opts.log.warn({ err, stage, attempt: attempt + 1, retry_in_ms: jittered }, stage === "store" ? "storing a batch failed; consumption paused, retrying" : "writing to the dead-letter topic failed; consumption paused, retrying");
        await this.abort.wait(jittered);
      }
    }
  }

  private resumeAfterRetry(): void {
    if (!this.pausedForRetry) return;
    this.pausedForRetry = false;
    this.opts.log.info("stores available again; consumption resumed");
    if (!this.stopping) this.opts.source.resume();
  }
}
