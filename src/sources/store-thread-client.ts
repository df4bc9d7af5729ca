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
 * outcomes come back as two typed arrays.
 */
import { join } from "node:path";
import { StoreUnavailable } from "../store/errors.ts";
import type { RowOutcome, ValueWrite } from "../store/types.ts";

/** Rows packed for the thread. */
export interface PackedRows {
  n: number;
  featureIds: Int32Array<ArrayBuffer>;
  eventTimes: Float64Array<ArrayBuffer>;
  entityIds: string[];
  /** values then hashes, back to back; `ends[2i]` ends row i's value, `ends[2i+1]` its hash */
  bytes: Uint8Array<ArrayBuffer>;
  ends: Uint32Array<ArrayBuffer>;
}

/** Messages to the thread. */
export type ToStoreThread =
  | { t: "init"; dataDir: string; ownChangeLedger: SharedArrayBuffer; cacheMib: number }
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
  return { n, featureIds, eventTimes, entityIds, bytes, ends };
}

/** The rows of {@link packRows}, their bytes views of the packed buffer. */
export function unpackRows(p: PackedRows): ValueWrite[] {
  const rows = new Array<ValueWrite>(p.n);
  let at = 0;
  for (let i = 0; i < p.n; i++) {
    const v = p.ends[2 * i] as number;
    const h = p.ends[2 * i + 1] as number;
    rows[i] = {
      feature_id: p.featureIds[i] as number,
      entity_id: p.entityIds[i] as string,
      event_time: p.eventTimes[i] as number,
      value: p.bytes.subarray(at, v),
      value_hash: p.bytes.subarray(v, h),
    };
    at = h;
  }
  return rows;
}

/** Where the thread's code is: its entry from source, or the entrypoint embedded in the binary (scripts/build.ts). */
function threadUrl(): string {
  if (Bun.main.includes("$bunfs")) return join(Bun.main, "..", "sources", "store-thread.js");
  return new URL("./store-thread.ts", import.meta.url).href;
}

/** The main thread's side: writes and position updates, answered in order. */
export class StoreThread {
  private readonly worker: Worker;
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (m: FromStoreThread) => void; reject: (e: Error) => void }>();
  private readonly ready: Promise<void>;
  private dead: Error | undefined;

  private constructor(opts: { dataDir: string; ownChangeLedger: SharedArrayBuffer; cacheMib: number }) {
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
  static async open(opts: { dataDir: string; ownChangeLedger: SharedArrayBuffer; cacheMib: number }): Promise<StoreThread> {
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
    const m = await this.call({ t: "write", id: this.nextId++, rows: p }, [p.featureIds.buffer, p.eventTimes.buffer, p.bytes.buffer, p.ends.buffer]);
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
