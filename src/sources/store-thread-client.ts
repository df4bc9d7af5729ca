/**
 * The embedded store's writes of a `materialize` run on a thread of their own (issue 14, speed):
 * reading and preparing chunk N+1 (this thread) overlaps storing chunk N (SQLite, about three
 * quarters of a load's CPU), on a machine with two cores or more.
 *
 * The thread (./store-thread.ts) opens its own connection to the same SQLite file (WAL), a
 * sibling of the main one (the commits it makes are this process's own, not another process's:
 * see OwnChangeLedger), and runs `writeValues` (history, latest values, change counter: the same
 * transaction as the API's writes) and the run's position updates, one at a time in the order
 * sent: a chunk's position is saved after its values are committed, as before. Every write of a
 * run goes through it, so the main thread never waits for the file's write lock.
 *
 * Rows travel packed (columns in transferred buffers, not one cloned object per value); the
 * outcomes come back as two typed arrays. `materialize` keeps up to two chunks queued here, so
 * the thread starts the next the moment one commits; the main connection meanwhile copies its
 * commits into the database file ({@link WalCopier}).
 */
import { join } from "node:path";
import { StoreUnavailable } from "../store/errors.ts";
import { keyOrder, type ValueColumns } from "../store/sqlite/value-writer.ts";
import type { RowOutcome, ValueWrite } from "../store/types.ts";

/** Rows packed for the thread, in input order, with their key order. */
export interface PackedRows {
  n: number;
  featureIds: Int32Array<ArrayBuffer>;
  eventTimes: Float64Array<ArrayBuffer>;
  entityIds: string[];
  /** values then hashes, back to back; `ends[2i]` ends row i's value, `ends[2i+1]` its hash */
  bytes: Uint8Array<ArrayBuffer>;
  ends: Uint32Array<ArrayBuffer>;
  /** the rows' {@link keyOrder}, sorted here so the store thread does not */
  order: Int32Array<ArrayBuffer>;
}

/** Messages to the thread. */
export type ToStoreThread =
  | { t: "init"; dataDir: string; ownChangeLedger: SharedArrayBuffer; cacheMib: number; walPages: number }
  | { t: "write"; id: number; rows: PackedRows }
  | { t: "state"; id: number; tenant: string; name: string; state: { watermark?: number | null; run?: unknown }; now: number }
  | { t: "close" };

/** Messages from the thread. */
export type FromStoreThread =
  | { t: "ready" }
  | { t: "init_failed"; message: string }
  | { t: "written"; id: number; seqs: Float64Array; stored: Uint8Array }
  | { t: "done"; id: number }
  | { t: "failed"; id: number; message: string; unavailable: boolean; store: string };

export function packRows(rows: readonly ValueWrite[]): PackedRows {
  const n = rows.length;
  let size = 0;
  for (let i = 0; i < n; i++) {
    const r = rows[i] as ValueWrite;
    size += r.value.byteLength + r.value_hash.byteLength;
  }
  const featureIds = new Int32Array(n);
  const eventTimes = new Float64Array(n);
  const entityIds = new Array<string>(n);
  const bytes = new Uint8Array(size);
  const ends = new Uint32Array(2 * n);
  let at = 0;
  for (let i = 0; i < n; i++) {
    const r = rows[i] as ValueWrite;
    featureIds[i] = r.feature_id;
    eventTimes[i] = r.event_time;
    entityIds[i] = r.entity_id;
    bytes.set(r.value, at);
    at += r.value.byteLength;
    ends[2 * i] = at;
    bytes.set(r.value_hash, at);
    at += r.value_hash.byteLength;
    ends[2 * i + 1] = at;
  }
  return { n, featureIds, eventTimes, entityIds, bytes, ends, order: keyOrder({ n, featureIds, entityIds, eventTimes }) };
}

/** The columns of {@link packRows}: views of the packed buffer, no object per row. */
export function unpackColumns(p: PackedRows): ValueColumns {
  const values = new Array<Uint8Array>(p.n);
  const hashes = new Array<Uint8Array>(p.n);
  let at = 0;
  for (let i = 0; i < p.n; i++) {
    const v = p.ends[2 * i] as number;
    const h = p.ends[2 * i + 1] as number;
    values[i] = p.bytes.subarray(at, v);
    hashes[i] = p.bytes.subarray(v, h);
    at = h;
  }
  return { n: p.n, featureIds: p.featureIds, entityIds: p.entityIds, eventTimes: p.eventTimes, values, hashes };
}

/** Where the thread's code is: its entry from source, or the entrypoint embedded in the binary (scripts/build.ts). */
function threadUrl(): string {
  if (Bun.main.includes("$bunfs")) return join(Bun.main, "..", "sources", "store-thread.js");
  return new URL("./store-thread.ts", import.meta.url).href;
}

/** What the thread opens. */
export interface StoreThreadOptions {
  dataDir: string;
  ownChangeLedger: SharedArrayBuffer;
  /** its connection's page cache, MiB */
  cacheMib: number;
  /** its connection's automatic checkpoint threshold, WAL pages */
  walPages: number;
}

/** SQLite's answer to `PRAGMA wal_checkpoint` (SqliteDatabase.checkpointWal). */
export interface WalCounts {
  /** 1: the checkpoint could not finish (another one ran, or a lock was held) */
  busy: number;
  /** frames in the WAL */
  log: number;
  /** frames of it copied into the database file */
  checkpointed: number;
}

/** A connection that checkpoints (the main thread's SqliteDatabase). */
export interface WalCheckpointer {
  checkpointWal(mode: "PASSIVE"): Promise<WalCounts>;
}

/**
 * Checkpoints beside the store thread (issue 14): the main connection copies the thread's
 * committed WAL frames into the database file while the thread writes the next chunk, so the
 * copying and its two `fsync`s are off the thread that limits a load (measured, 500,000 rows x
 * 4 features, strace at load 5-9: the store thread's `fsync`s 14-15 taking 3.75-5.6 s -> 12-14
 * taking 1.2-1.5 s; the main thread's 78-82 taking 6.3-7.9 s, while it would otherwise wait; its
 * CPU +1.4-1.6 s, as it copies every chunk's pages where the thread copied them once per 128 MiB).
 *
 * A WAL starts over only when a write transaction begins with every frame copied; a passive
 * checkpoint beside a writer that never pauses never gets there. So the store thread keeps
 * its own automatic checkpoint at `walPages` (right after a commit, with the WAL past the
 * bound): it copies what is left (the frames of the last chunk or two, the rest copied here)
 * and its next write starts the WAL over. A checkpoint running here at that moment makes the
 * thread's give up (SQLite lets one run at a time), and the WAL would grow on; so once
 * SQLite's counts say the WAL is past the bound, this one stays out of the way for the next
 * two chunks. The counts come from the pragma, never from the `-shm` file (a descriptor of that
 * file, once closed, drops SQLite's POSIX locks on it: test/unit/sqlite-shm-lock.test.ts). If no copy
 * runs here at all, the thread checkpoints as it did alone: the bound holds either way.
 */
export class WalCopier {
  private skip = 0;

  constructor(
    private readonly db: WalCheckpointer,
    private readonly walPages: number,
  ) {}

  /** Copies what the thread has committed, unless it is the thread's turn (then undefined). */
  async copy(): Promise<WalCounts | undefined> {
    if (this.skip > 0) {
      this.skip--;
      return undefined;
    }
    const r = await this.db.checkpointWal("PASSIVE");
    if (r.log >= this.walPages) this.skip = 2;
    return r;
  }

  /** A last copy, once the thread is done: every frame in the database file, the next write starts the WAL over. */
  finish(): Promise<WalCounts> {
    return this.db.checkpointWal("PASSIVE");
  }
}

/** The main thread's side: writes and position updates, answered in order. */
export class StoreThread {
  private readonly worker: Worker;
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (m: FromStoreThread) => void; reject: (e: Error) => void }>();
  private readonly ready: Promise<void>;
  private dead: Error | undefined;

  private constructor(opts: StoreThreadOptions) {
    this.worker = new Worker(threadUrl());
    let readyResolve!: () => void;
    let readyReject!: (e: Error) => void;
    this.ready = new Promise<void>((res, rej) => {
      readyResolve = res;
      readyReject = rej;
    });
    this.ready.catch(() => {});
    this.worker.onmessage = (e: MessageEvent<FromStoreThread>) => {
      const m = e.data;
      if (m.t === "ready") return readyResolve();
      if (m.t === "init_failed") return readyReject(new Error(`the store thread could not open the database: ${m.message}`));
      const w = this.waiting.get(m.id);
      if (!w) return;
      this.waiting.delete(m.id);
      if (m.t === "failed") {
        w.reject(m.unavailable ? new StoreUnavailable(m.store, m.message) : new Error(`store thread: ${m.message}`));
      } else w.resolve(m);
    };
    this.worker.onerror = (e) => this.fail(new Error(`store thread: ${e.message}`), readyReject);
    this.worker.addEventListener("close", () => this.fail(new Error("store thread exited"), readyReject));
    this.worker.postMessage({ t: "init", ...opts } satisfies ToStoreThread);
  }

  private fail(err: Error, readyReject: (e: Error) => void): void {
    this.dead ??= err;
    readyReject(err);
    for (const w of this.waiting.values()) w.reject(err);
    this.waiting.clear();
  }

  /** Starts the thread and waits until its connection is open. */
  static async open(opts: StoreThreadOptions): Promise<StoreThread> {
    const t = new StoreThread(opts);
    try {
      await t.ready;
    } catch (err) {
      await t.close();
      throw err;
    }
    return t;
  }

  private call(m: ToStoreThread & { id: number }, transfer?: Bun.Transferable[]): Promise<FromStoreThread> {
    if (this.dead) return Promise.reject(this.dead);
    return new Promise((resolve, reject) => {
      this.waiting.set(m.id, { resolve, reject });
      this.worker.postMessage(m, transfer ?? []);
    });
  }

  /** `Database.writeValues` on the thread's connection. */
  async writeValues(rows: readonly ValueWrite[]): Promise<RowOutcome[]> {
    if (rows.length === 0) return [];
    const p = packRows(rows);
    const m = await this.call({ t: "write", id: this.nextId++, rows: p }, [p.featureIds.buffer, p.eventTimes.buffer, p.bytes.buffer, p.ends.buffer, p.order.buffer]);
    if (m.t !== "written") throw new Error(`store thread: unexpected answer ${m.t}`);
    const out = new Array<RowOutcome>(rows.length);
    for (let i = 0; i < rows.length; i++) out[i] = { seq: m.seqs[i] as number, status: m.stored[i] === 1 ? "stored" : "identical" };
    return out;
  }

  /** `SourceStore.putSourceState` on the thread's connection, after the writes sent before it. */
  async putSourceState(tenant: string, name: string, state: { watermark?: number | null; run?: unknown }, now: number): Promise<void> {
    await this.call({ t: "state", id: this.nextId++, tenant, name, state, now });
  }

  /** Closes the thread's connection and ends it. */
  async close(): Promise<void> {
    if (this.dead) {
      this.worker.terminate();
      return;
    }
    const closed = new Promise<void>((resolve) => this.worker.addEventListener("close", () => resolve()));
    this.worker.postMessage({ t: "close" } satisfies ToStoreThread);
    await Promise.race([closed, Bun.sleep(5_000)]);
    this.worker.terminate();
  }
}
