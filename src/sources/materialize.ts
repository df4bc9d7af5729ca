/**
 * Materializing a source: stream its rows in chunks, turn each row into a write record
 * (entity id, event time, feature values by reference) and store the chunk through the same
 * path as `POST /features/write` (prepareRows + storeValues: history, the latest values (on
 * PostgreSQL a table kept by compare-and-set; on SQLite the newest history row) and the online
 * cache). After each chunk the run's position is saved.
 *
 * Exactly once without a shared transaction: the position is saved after the chunk's values
 * are committed, so a kill between the two replays at most that one chunk, and a replayed value
 * is an identical re-send, which the store never keeps twice (same feature version, entity,
 * event time and value). Idempotence of whole runs follows the same way.
 */
import { dirname } from "node:path";
import { AppError } from "../errors.ts";
import { formatTime, parseTime } from "../lib/time.ts";
import { parseDtype, type Dtype } from "../registry/dtype.ts";
import type { Definition } from "../registry/snapshot.ts";
import { entityIdProblem } from "../registry/names.ts";
import { dbCall, type Deps } from "../serving/deps.ts";
import { offerToOnline, prepareRows, prepareValue, type WriteRecord } from "../serving/write.ts";
import type { RowOutcome, ValueWrite } from "../store/types.ts";
import { FieldCountError, openReader, SourceError, type Chunk, type Position, type SourceReader } from "./read.ts";
import { checkColumns, checkMapping, type CheckedSource, type SourceSpec } from "./spec.ts";
import { StoreThread, WalCopier, type WalCheckpointer } from "./store-thread-client.ts";

/** Rows per chunk are chosen so a chunk holds about this many values. */
const CHUNK_VALUES = 50_000;
/**
 * A full collection runs after a chunk once this thread's JavaScript heap is above this, or the
 * process's RSS above GC_ABOVE_RSS (the budget of a load is 512 MiB). The heap, not the RSS,
 * is the usual trigger: the RSS also counts the SQLite page caches (the store thread's fills to
 * STORE_THREAD_CACHE_MIB), which no collection shrinks; an RSS trigger then collected after
 * every chunk (68% of the main thread's profile). Measured on 500,000 rows x 4 features into
 * the embedded store: a 160 MiB heap trigger peaked at 500-527 MiB, 64 MiB at 356-461.
 */
const GC_ABOVE_HEAP = 64 * 2 ** 20;
const GC_ABOVE_RSS = 448 * 2 ** 20;
/** Event times the fast path of prepareChunk takes (years 1970 to 9999); others go through prepareRows. */
const FAST_TIME_MAX = 253_402_300_800_000;
/** Rows per call offering a chunk to a shared online store (Redis: about 1,000 entities of 4 features). */
const ONLINE_SLICE_ROWS = 4_096;
/** First rejected rows kept in a summary. */
const FIRST_REJECTED = 10;
/**
 * SQLite page cache of the embedded store's write thread, MiB (within the 512 MiB budget of a
 * bulk load: measured, 96 MiB of cache added about 100 MiB to the peak RSS of a 500,000-row load).
 */
const STORE_THREAD_CACHE_MIB = 64;
/**
 * WAL pages past which the store thread's commits checkpoint (128 MiB; SQLite's default, 1,000
 * pages, checkpointed after every chunk, so a chunk's pages were written twice). Measured on
 * 500,000 rows x 4 features: 1,392 -> 1,154 MiB written, the store thread's CPU about 10% less.
 * The WAL is then up to this size (and a chunk or two) on disk during a load; crash safety is
 * unchanged (synchronous as configured: each commit's frames are in the WAL before the
 * position that follows it). Most frames are copied into the database by the main connection
 * meanwhile (WalCopier, store-thread-client.ts); the thread's checkpoint copies what is left
 * and lets the WAL start over.
 */
const STORE_THREAD_WAL_PAGES = 32_768;

/** A run's arguments; a saved unfinished run is resumed only by a run with the same ones. */
export interface RunArgs {
  start: number | null;
  end: number | null;
  incremental: boolean;
}

/** What a run has done so far (kept across a resume). */
export interface RunStats {
  rows_read: number;
  rows_outside_window: number;
  values_stored: number;
  identical_resends: number;
  null_values: number;
  rows_rejected: number;
  rejected_by_reason: Record<string, number>;
  first_rejected: { part: string; row: number; reason: string }[];
  max_event_time: number | null;
  /**
   * where the time went, ms: reading the source, turning rows into values, storing their
   * history, and offering them to a shared online store (which overlaps the next chunk's store);
   * embedded store: copying the WAL into the database file on the main thread (which overlaps
   * the store thread's writes)
   */
  timings?: { read_ms: number; prepare_ms: number; store_ms: number; online_ms?: number; checkpoint_ms?: number };
}

/** The saved state of an unfinished run (source_state.run). */
interface SavedRun {
  args: RunArgs;
  window: { start: number | null; end: number | null };
  position: Position | null;
  stats: RunStats;
  started_at: number;
}

/** The end-of-run report of one source. */
export interface Summary extends RunStats {
  source: string;
  window: { start: string | null; end: string | null };
  /** true when this run continued an interrupted one */
  resumed: boolean;
  watermark: string | null;
  elapsed_ms: number;
}

/** Progress of a running source, reported after each chunk. */
export interface Progress {
  source: string;
  rows_read: number;
  values_stored: number;
  identical_resends: number;
  rows_rejected: number;
  /** progress so far and total in `unit` (total undefined when unknown) */
  done: number;
  total: number | undefined;
  unit: "rows" | "bytes";
}

/** A row that cannot be stored; stops a run unless invalid rows are skipped. */
export class InvalidRowError extends Error {
  override name = "InvalidRowError";
  constructor(
    readonly source: string,
    readonly part: string,
    readonly row: number,
    readonly reason: string,
  ) {
    super(`source ${source}: ${part}, row ${row}: ${reason}; nothing from its chunk was stored (fix the row, or pass --skip-invalid)`);
  }
}

/** Where rejected rows go with `--skip-invalid` (one JSON line each). */
export interface RejectSink {
  write(line: string): void;
}

/** Options of {@link materializeSource}. */
export interface MaterializeOptions extends RunArgs {
  /** set: store the valid rows and write rejected ones here; unset: stop at the first invalid row */
  rejects?: RejectSink | undefined;
  /** rows per chunk (default: about 50,000 values a chunk) */
  chunkRows?: number | undefined;
  signal?: AbortSignal | undefined;
  onProgress?: ((p: Progress) => void) | undefined;
  onStart?: ((info: { source: string; total: number | undefined; unit: "rows" | "bytes"; resumed: boolean }) => void) | undefined;
  env?: Record<string, string | undefined>;
  /** embedded store: write on a thread of its own (default true; see store-thread-client.ts) */
  storeThread?: boolean | undefined;
}

function emptyStats(): RunStats {
  return {
    rows_read: 0, rows_outside_window: 0, values_stored: 0, identical_resends: 0, null_values: 0,
    rows_rejected: 0, rejected_by_reason: {}, first_rejected: [], max_event_time: null,
  };
}

function sameArgs(a: RunArgs, b: RunArgs): boolean {
  return a.start === b.start && a.end === b.end && a.incremental === b.incremental;
}

const INT_RE = /^[+-]?\d+$/;
const NUM_RE = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** Turns one source cell into the JSON form the write path validates, or undefined (no value). */
function cellToJson(t: Dtype["scalar"], v: unknown): unknown {
  switch (t) {
    case "bool":
      if (typeof v === "string") {
        const s = v.trim().toLowerCase();
        return s === "true" || s === "t" || s === "1" ? true : s === "false" || s === "f" || s === "0" ? false : v;
      }
      return v;
    case "int32":
    case "int64":
      if (typeof v === "bigint") return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
      if (typeof v === "string") {
        const s = v.trim();
        return INT_RE.test(s) ? (t === "int64" ? s : Number(s)) : v;
      }
      return v;
    case "float32":
    case "float64":
      if (typeof v === "bigint") return Number(v);
      if (typeof v === "string") {
        const s = v.trim();
        return NUM_RE.test(s) ? Number(s) : v;
      }
      return v;
    case "bytes":
      return v instanceof Uint8Array ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64") : v;
    case "timestamp":
      if (v instanceof Date) return Number.isNaN(v.getTime()) ? v : v.toISOString();
      if (typeof v === "number" && Number.isFinite(v)) return formatTime(v);
      return v;
    case "string":
      return v;
  }
}

function valueToJson(dtype: Dtype, v: unknown): unknown {
  if (!dtype.list) return cellToJson(dtype.scalar, v);
  let arr: unknown = v;
  if (typeof v === "string") {
    try {
      arr = JSON.parse(v);
    } catch {
      return v; // the write path says "expected an array"
    }
  } else if (ArrayBuffer.isView(v) && !(v instanceof DataView)) arr = Array.from(v as unknown as ArrayLike<unknown>);
  return Array.isArray(arr) ? arr.map((x) => (x === null || x === undefined ? x : cellToJson(dtype.scalar, x))) : arr;
}

function timeOf(v: unknown): number | null {
  if (typeof v === "number") return Number.isFinite(v) ? Math.trunc(v) : null;
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? null : v.getTime();
  if (typeof v === "string") return parseTime(v.trim());
  return null;
}

function isMissing(v: unknown): boolean {
  return v === null || v === undefined || v === "";
}

function jsonCell(_k: string, v: unknown): unknown {
  if (typeof v === "bigint") return v.toString();
  if (v instanceof Uint8Array) return Buffer.from(v).toString("base64");
  return v;
}

/**
 * Validates a source against the registry and the source itself (columns exist, types fit).
 * Throws a SourceError naming every problem.
 */
export async function checkSource(deps: Pick<Deps, "registry">, tenant: string, spec: SourceSpec, reader: SourceReader = openReader(spec)): Promise<{ checked: CheckedSource; total: number | undefined; unit: "rows" | "bytes" }> {
  const checked = checkMapping(spec, tenant, deps.registry.current, []);
  if (typeof checked === "string") throw new SourceError(`source ${spec.name}: ${checked}`);
  const desc = await reader.describe();
  const problems = checkColumns(checked, desc.columns);
  if (problems.length > 0) throw new SourceError(`source ${spec.name}: ${problems.join("; ")}`);
  return { checked, total: desc.total, unit: desc.unit };
}

/**
 * Loads the rows of `spec` whose event time is in the window into history and the online store.
 * Resumes the source's unfinished run when it was started with the same arguments. Throws
 * {@link InvalidRowError} (default mode), {@link SourceError} (source unreadable), or the
 * store's `unavailable` AppError; the position of the last stored chunk is kept either way.
 */
export async function materializeSource(deps: Deps, tenant: string, spec: SourceSpec, opts: MaterializeOptions): Promise<Summary> {
  const began = Date.now();
  const reader = openReader(spec, opts.env);
  const { checked, total, unit } = await checkSource(deps, tenant, spec, reader);
  const args: RunArgs = { start: opts.start, end: opts.end, incremental: opts.incremental };
  const state = await deps.stores.registry.sources.getSourceState(tenant, spec.name);
  const saved = state?.run as SavedRun | null | undefined;
  const resumed = !!saved && sameArgs(saved.args, args);
  const run: SavedRun = resumed
    ? (saved as SavedRun)
    : {
        args,
        window: {
          start: opts.incremental && state?.watermark != null ? Math.max(state.watermark, opts.start ?? -Infinity) : opts.start,
          end: opts.end,
        },
        position: null,
        stats: emptyStats(),
        started_at: deps.clock.now(),
      };
  if (!resumed) await deps.stores.registry.sources.putSourceState(tenant, spec.name, { run }, deps.clock.now());
  opts.onStart?.({ source: spec.name, total, unit, resumed });

  const featureCols = [...checked.targets.keys()];
  const columns = [spec.entity_column, spec.event_time_column, ...(spec.created_column ? [spec.created_column] : []), ...featureCols];
  const types = featureCols.map((c) => parseDtype(checked.targets.get(c)?.dtype ?? "string") as Dtype);
  const refs = featureCols.map((c) => spec.features[c] as string);
  const firstFeature = spec.created_column ? 3 : 2;
  const chunkRows = opts.chunkRows ?? Math.max(1_000, Math.ceil(CHUNK_VALUES / featureCols.length));
  const { start, end } = run.window;
  const s = run.stats;

  type Rejected = { part: string; row: number; reason: string; key: string; cells: unknown[] };
  const record = (r: Rejected) => {
    s.rows_rejected++;
    s.rejected_by_reason[r.key] = (s.rejected_by_reason[r.key] ?? 0) + 1;
    if (s.first_rejected.length < FIRST_REJECTED) s.first_rejected.push({ part: r.part, row: r.row, reason: r.reason });
    const obj: Record<string, unknown> = {};
    r.cells.forEach((c, i) => (obj[columns[i] as string] = c));
    opts.rejects?.write(JSON.stringify({ source: spec.name, part: r.part, row: r.row, reason: r.reason, cells: obj }, jsonCell));
  };

  type Item = { row: number; cells: unknown[]; id: string; time: number; created: number };
  /** The record prepareRows validates for an item (the slow path, and the source of every rejection's message). */
  const recordOf = (it: Item): WriteRecord => {
    const features: Record<string, unknown> = {};
    for (let f = 0; f < refs.length; f++) {
      const v = it.cells[firstFeature + f];
      if (!isMissing(v)) features[refs[f] as string] = valueToJson(types[f] as Dtype, v);
    }
    return { entity_id: it.id, event_time: formatTime(it.time), features };
  };
  // two columns feeding one feature: only prepareRows' record semantics (the later one wins)
  const fastRefs = new Set(refs).size === refs.length;
  /** Turns a chunk into rows to store (CPU only: it overlaps the previous chunk's store I/O). */
  const prepareChunk = (chunk: Chunk) => {
    const items: Item[] = [];
    const rejected: Rejected[] = [];
    let outside = 0;
    let nulls = 0;
    const reject = (part: string, row: number, reason: string, key: string, cells: unknown[]) => void rejected.push({ part, row, reason, key, cells });
    let chunkMax: number | null = null;
    for (let i = 0; i < chunk.rows.length; i++) {
      const cells = chunk.rows[i] as unknown[];
      const rowNo = chunk.firstRow + i;
      if (cells[0] instanceof FieldCountError) {
        reject(chunk.part, rowNo, cells[0].message, "wrong number of fields", []);
        continue;
      }
      const rawId = cells[0];
      const id = typeof rawId === "string" ? rawId : typeof rawId === "number" || typeof rawId === "bigint" ? String(rawId) : null;
      const idProblem = id === null ? (isMissing(rawId) ? "entity id is missing" : "entity id is not text or an integer") : entityIdProblem(id);
      if (idProblem !== null) {
        reject(chunk.part, rowNo, `${spec.entity_column}: ${idProblem}`, `${spec.entity_column}: ${idProblem}`, cells);
        continue;
      }
      const t = timeOf(cells[1]);
      if (t === null) {
        const why = isMissing(cells[1]) ? "event time is missing" : "event time is not a timestamp (RFC 3339 text, or a timestamp column)";
        reject(chunk.part, rowNo, `${spec.event_time_column}: ${why}`, `${spec.event_time_column}: ${why}`, cells);
        continue;
      }
      if ((start !== null && t < start) || (end !== null && t >= end)) {
        outside++;
        continue;
      }
      for (let f = 0; f < refs.length; f++) if (isMissing(cells[firstFeature + f])) nulls++;
      const created = spec.created_column ? (timeOf(cells[2]) ?? (typeof cells[2] === "bigint" ? Number(cells[2]) : 0)) : 0;
      items.push({ row: rowNo, cells, id: id as string, time: t, created });
      if (chunkMax === null || t > chunkMax) chunkMax = t;
    }
    // Ties (same entity and event time) are settled by write order: oldest created first.
    if (spec.created_column) items.sort((a, b) => a.time - b.time || a.created - b.created);

    // The fast path does what prepareRows does for a valid row (resolve the feature, then
    // prepareValue: coerce, encode, size check, hash), without a record per row; a row it
    // cannot take whole (a value that does not fit, a time in the future or out of its range,
    // a feature that no longer resolves) goes through prepareRows, which stores it or says why.
    const snapshot = deps.registry.current;
    const fastDefs = refs.map((ref) => {
      const r = snapshot.resolve(tenant, ref);
      return fastRefs && r.kind === "ok" && r.def.entity_type === checked.entityType ? r.def : null;
    });
    const latest = deps.clock.now() + deps.config.MAX_FUTURE_SKEW;
    const rows: ValueWrite[] = [];
    const defs: Definition[] = [];
    for (const it of items) {
      const mark = rows.length;
      let fast = it.time >= 0 && it.time < FAST_TIME_MAX && it.time <= latest;
      for (let f = 0; fast && f < refs.length; f++) {
        const v = it.cells[firstFeature + f];
        if (isMissing(v)) continue;
        const def = fastDefs[f];
        if (!def) {
          fast = false;
          break;
        }
        const row = prepareValue(def, it.id, it.time, valueToJson(types[f] as Dtype, v));
        if ("message" in row) {
          fast = false;
          break;
        }
        rows.push(row);
        defs.push(def);
      }
      if (fast) continue;
      rows.length = mark;
      defs.length = mark;
      try {
        const one = prepareRows(deps, tenant, checked.entityType, [recordOf(it)], 0);
        for (let k = 0; k < one.rows.length; k++) {
          rows.push(one.rows[k] as ValueWrite);
          defs.push(one.defs[k] as Definition);
        }
      } catch (err) {
        if (!(err instanceof AppError)) throw err;
        const fe = err.errors?.[0];
        const ref = fe?.path.replace(/^records\[\d+\]\.features\./, "") ?? "";
        const col = featureCols[refs.indexOf(ref)] ?? ref;
        const msg = fe?.message ?? err.message;
        reject(chunk.part, it.row, `column ${JSON.stringify(col)} (${ref}): ${msg}`, `${col}: ${msg}`, it.cells);
      }
    }
    return { chunk, rows, defs, rejected, outside, nulls, chunkMax };
  };

  // Stores shared by processes (PostgreSQL) take a chunk as `lanes` concurrent writes, the rows
  // split by entity: each entity's rows stay in one write, in input order, so ties between its
  // values are settled as in one write; an embedded store has one writer at a time.
  const lanes = deps.stores.registry.capabilities.embedded ? 1 : 2;
  const laneOf = (id: string): number => {
    let h = 0;
    for (let i = 0; i < id.length; i++) h = (h * 31 + id.charCodeAt(i)) | 0;
    return (h >>> 0) % lanes;
  };
  const sharedOnline = deps.stores.online.capabilities.sharedAcrossProcesses;
  // The embedded store writes on a thread of its own: this one reads and prepares the next
  // chunk meanwhile. Every write of the run goes there (values and positions, in order).
  const embedded = deps.stores.offline as { path?: unknown; ownChangeLedger?: unknown };
  const thread =
    opts.storeThread !== false && deps.stores.registry.capabilities.embedded && typeof embedded.path === "string" && embedded.ownChangeLedger instanceof SharedArrayBuffer
      ? await StoreThread.open({ dataDir: dirname(embedded.path), ownChangeLedger: embedded.ownChangeLedger, cacheMib: STORE_THREAD_CACHE_MIB, walPages: STORE_THREAD_WAL_PAGES })
      : undefined;
  // The main connection copies the store thread's commits into the database file (WalCopier):
  // a synchronous call, made while this thread would only wait.
  const copier = thread && typeof (embedded as { checkpointWal?: unknown }).checkpointWal === "function" ? new WalCopier(embedded as WalCheckpointer, STORE_THREAD_WAL_PAGES) : undefined;
  const writeValues = thread ? (rows: ValueWrite[]) => thread.writeValues(rows) : (rows: ValueWrite[]) => deps.stores.offline.writeValues(rows);
  const saveState = thread
    ? (state: { run: SavedRun | null }) => thread.putSourceState(tenant, spec.name, state, deps.clock.now())
    : (state: { run: SavedRun | null }) => deps.stores.registry.sources.putSourceState(tenant, spec.name, state, deps.clock.now());
  /** The chunks' steps after their history is stored (online offer, position), in chunk order. */
  let tail: Promise<void> = Promise.resolve();
  let tailError: unknown;
  /** the first failed history write: no position is saved after it */
  let writeFailed: unknown;
  /** the heap above which a chunk's tail collects garbage (see GC_ABOVE_HEAP) */
  let gcAboveHeap = GC_ABOVE_HEAP;

  /**
   * Offers a chunk's rows to a shared online store in slices of ONLINE_SLICE_ROWS, one after
   * another: each call has the store's timeout to itself (a whole chunk in one call queued
   * ~200 script runs behind each other, and on a busy machine a call now and then timed out,
   * which makes the Redis cache start a new generation).
   */
  const offerSlices = async (parts: { rows: ValueWrite[]; defs: Definition[] }[], written: RowOutcome[][]) => {
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i] as (typeof parts)[number];
      const outcomes = written[i] as RowOutcome[];
      for (let at = 0; at < p.rows.length; at += ONLINE_SLICE_ROWS) {
        const to = at + ONLINE_SLICE_ROWS;
        const whole = at === 0 && to >= p.rows.length;
        await offerToOnline(
          deps,
          { tenant, entityType: checked.entityType, rows: whole ? p.rows : p.rows.slice(at, to), defs: whole ? p.defs : p.defs.slice(at, to) },
          whole ? outcomes : outcomes.slice(at, to),
        );
      }
    }
  };

  /** Throws the chunk's first invalid row unless invalid rows are skipped (before anything of it is sent). */
  const checkRejected = ({ rejected }: ReturnType<typeof prepareChunk>) => {
    if (rejected.length > 0) {
      rejected.sort((a, b) => a.row - b.row);
      const first = rejected[0] as Rejected;
      if (!opts.rejects) throw new InvalidRowError(spec.name, first.part, first.row, first.reason);
    }
  };
  /**
   * Stores a prepared chunk's history; its online offer and the position after it follow in
   * the background (see `tail`), while the next chunk is prepared and stored. A kill before
   * the position is saved replays the chunk: its values are identical re-sends, offered to
   * the online store again.
   */
  const storeChunk = async ({ chunk, rows, defs, rejected, outside, nulls, chunkMax }: ReturnType<typeof prepareChunk>) => {
    const t0 = performance.now();
    const parts: { rows: ValueWrite[]; defs: Definition[] }[] = Array.from({ length: lanes }, () => ({ rows: [], defs: [] }));
    if (lanes === 1) parts[0] = { rows, defs };
    else {
      for (let i = 0; i < rows.length; i++) {
        const p = parts[laneOf((rows[i] as ValueWrite).entity_id)] as (typeof parts)[number];
        p.rows.push(rows[i] as ValueWrite);
        p.defs.push(defs[i] as Definition);
      }
    }
    // The write path of POST /features/write (storeValues): history and the latest values
    // in one offline-store transaction per part, then every row offered to a shared online
    // store (Redis) by compare-and-set; a private in-process one is skipped (no one reads it
    // here; servers drop theirs when the change feed reports values).
    let written: RowOutcome[][];
    try {
      written = await Promise.all(parts.map((p) => (p.rows.length === 0 ? Promise.resolve([] as RowOutcome[]) : dbCall(deps, "write", () => writeValues(p.rows)))));
    } catch (err) {
      writeFailed ??= err;
      throw err;
    }
    // A chunk queued on the store thread behind one whose write failed may have been stored,
    // but its position must not be saved: it would skip the failed chunk. (The failure is
    // answered first: the thread answers in order.)
    if (writeFailed !== undefined) throw writeFailed;
    deps.metrics.valuesWritten.inc(rows.length);
    let stored = 0;
    for (const outcomes of written) for (const o of outcomes) if (o.status === "stored") stored++;
    // a chunk queued behind another on the store thread counts from when that one was done
    const t1 = performance.now();
    timings.store_ms += t1 - Math.max(t0, storedAt);
    storedAt = t1;
    const online = sharedOnline ? offerSlices(parts, written) : undefined;
    tail = tail.then(async () => {
      if (online) {
        const t1 = performance.now();
        await online;
        timings.online_ms += performance.now() - t1;
      }
      for (const r of rejected) record(r);
      s.rows_read += chunk.rows.length;
      s.rows_outside_window += outside;
      s.null_values += nulls;
      s.values_stored += stored;
      s.identical_resends += rows.length - stored;
      if (chunkMax !== null && (s.max_event_time === null || chunkMax > s.max_event_time)) s.max_event_time = chunkMax;
      // Collect garbage when the heap grows: left to itself the collector lets the heap (and
      // RSS) grow to several chunks' worth, and a bulk load must stay within its memory budget
      // (10 million rows peaked at 366 MiB with one after every chunk, which showed as a
      // quarter to a third of a profiled load's samples: now only past GC_ABOVE_HEAP).
      const mem = process.memoryUsage();
      if (mem.heapUsed > gcAboveHeap || mem.rss > GC_ABOVE_RSS) {
        Bun.gc(true);
        // a shared store (no store thread) keeps more chunks alive (one stored, one offered
        // online, one prepared): collect again once the heap doubles what survived
        if (!thread) gcAboveHeap = Math.max(GC_ABOVE_HEAP, 2 * process.memoryUsage().heapUsed);
      }
      run.position = chunk.position;
      await dbCall(deps, "save position", () => saveState({ run }));
      opts.onProgress?.({
        source: spec.name, rows_read: s.rows_read, values_stored: s.values_stored, identical_resends: s.identical_resends,
        rows_rejected: s.rows_rejected, done: chunk.done, total, unit,
      });
    });
    tail.catch((e: unknown) => void (tailError ??= e));
  };

  const timings = { read_ms: 0, prepare_ms: 0, store_ms: 0, online_ms: 0, checkpoint_ms: 0 };
  /** when the last chunk's history was stored */
  let storedAt = 0;
  /** the chunk being stored, and (store thread only) the one queued behind it */
  let inflight: Promise<void> | undefined;
  let queued: Promise<void> | undefined;
  let offered: Promise<void> | undefined;
  let mark = performance.now();
  try {
    for await (const chunk of reader.read(columns, run.position, chunkRows, run.window, opts.signal)) {
      // Let timers and signals run: with rows in memory and a synchronous store, a whole
      // row group's chunks would otherwise go by in microtasks (no cancel, no heartbeat).
      await new Promise<void>((resolve) => setImmediate(resolve));
      opts.signal?.throwIfAborted(); // stop between chunks, whatever the reader holds
      const t = performance.now();
      timings.read_ms += t - mark;
      const prepared = prepareChunk(chunk);
      mark = performance.now();
      timings.prepare_ms += mark - t;
      // The store thread takes this chunk while it still stores the previous one (it runs
      // them in order): it starts on it the moment that one is committed, whatever this thread
      // is doing then (copying WAL frames, reading). Other stores: one chunk at a time.
      if (!thread) await inflight;
      else if (queued) {
        await inflight;
        inflight = queued;
        queued = undefined;
      }
      // at most one chunk offered online beside the one being stored: memory stays bounded
      // when the online store is slower than history
      await offered;
      if (tailError !== undefined) throw tailError;
      if (writeFailed !== undefined) throw writeFailed;
      checkRejected(prepared);
      offered = tail.catch(() => {});
      const stored = storeChunk(prepared);
      stored.catch(() => {}); // handled: awaited before the next chunks or below
      if (thread && inflight) queued = stored;
      else inflight = stored;
      mark = performance.now();
      // while the store thread writes: copy into the database what it committed before
      if (copier) {
        await dbCall(deps, "checkpoint", () => copier.copy());
        const t2 = performance.now();
        timings.checkpoint_ms += t2 - mark;
        mark = t2;
      }
    }
    await inflight;
    await queued;
    await tail;
    // leave the WAL copied: the next writer starts it over, readers search none of it
    if (copier) {
      const t2 = performance.now();
      await dbCall(deps, "checkpoint", () => copier.finish());
      timings.checkpoint_ms += performance.now() - t2;
    }
  } finally {
    // what was stored keeps its position
    await inflight?.catch(() => {});
    await queued?.catch(() => {});
    await tail.catch(() => {});
    await thread?.close();
  }

  const watermark = s.max_event_time === null ? (state?.watermark ?? null) : Math.max(s.max_event_time, state?.watermark ?? -Infinity);
  await deps.stores.registry.sources.putSourceState(tenant, spec.name, { run: null, watermark }, deps.clock.now());
  return {
    source: spec.name,
    window: { start: start === null ? null : formatTime(start), end: end === null ? null : formatTime(end) },
    resumed,
    ...s,
    timings: {
      read_ms: Math.round(timings.read_ms), prepare_ms: Math.round(timings.prepare_ms), store_ms: Math.round(timings.store_ms), online_ms: Math.round(timings.online_ms),
      ...(copier ? { checkpoint_ms: Math.round(timings.checkpoint_ms) } : {}),
    },
    watermark: watermark === null ? null : formatTime(watermark),
    elapsed_ms: Date.now() - began,
  };
}
