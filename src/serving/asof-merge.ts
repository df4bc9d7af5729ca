/**
 * Point-in-time answers for an entity dataframe by a sorted merge: each (feature, entity) pair's
 * history is read once (one range read per batch of entities, `OfflineStore.getHistory`), kept
 * columnar (event times in a Float64Array, decoded values beside them), and every row asking
 * for that pair is answered by a binary search in it. A training query usually asks for each
 * entity many times (one row per label), so this reads each stored value at most once per
 * request instead of probing the index once per row and feature.
 *
 * Bounded: at most {@link MAX_CACHED_ROWS} history rows (or {@link MAX_CACHED_BYTES} of packed
 * values) are held; past that, everything held is dropped at the next chunk and re-read on
 * demand. Histories too long to be worth reading whole (longer on average than about twice the
 * rows asking for each entity: a read row costs about half an index probe) switch that entity
 * type to per-key probes (`OfflineStore.getAsOf`), detected by a read hitting its row limit.
 *
 * Answers equal the probes' exactly: the value with the greatest (event_time, seq) at or before
 * the row's time; `expired` when it is older than the feature's TTL; `not_found` otherwise.
 */
import type { Cell } from "../formats/frame.ts";
import { decodeValue } from "../registry/dtype.ts";
import type { Definition } from "../registry/snapshot.ts";
import type { AsOfKey, HistoryRow, OfflineStore, StoredRow } from "../store/types.ts";

/** History rows held at most (about 16 bytes each plus the decoded value). */
export const MAX_CACHED_ROWS = 4_000_000;
/** Packed value bytes held at most. */
export const MAX_CACHED_BYTES = 256 << 20;
/** History rows per read, about (a read's rows are JS objects until decoded; a read stops at twice this). */
const MAX_READ_ROWS = 131_072;
/** A read of at least this many rows is followed by a collection. */
const COLLECT_AFTER_ROWS = 32_768;
/** Entities per read at most. */
const MAX_READ_ENTITIES = 8_192;
/** Keys per probe call (the fallback). */
const PROBE_KEYS = 20_000;

export type Status = "present" | "not_found" | "expired";

const scratch = new Uint8Array(8);
const scratchF64 = new Float64Array(scratch.buffer);
const scratchF32 = new Float32Array(scratch.buffer, 0, 1);

/**
 * A packed value (registry/dtype.ts: msgpack) as {@link decodeValue} decodes it, read directly
 * for the scalar encodings that carry numbers and booleans in at most 32 bits (and float64):
 * unpacking each value through msgpackr costs more than the rest of the merge. Anything else
 * (strings, lists, 64-bit integers, which decode to bigint) goes through decodeValue.
 */
export function decodePacked(def: Pick<Definition, "type">, b: Uint8Array): Cell {
  if (!def.type.list) {
    const tag = b[0] as number;
    const n = b.length;
    if (n === 1) {
      if (tag < 0x80) return tag;
      if (tag >= 0xe0) return tag - 0x100;
      if (tag === 0xc2) return false;
      if (tag === 0xc3) return true;
    } else if (tag === 0xcb && n === 9) {
      for (let i = 0; i < 8; i++) scratch[i] = b[8 - i] as number;
      return scratchF64[0] as number;
    } else if (tag === 0xca && n === 5) {
      for (let i = 0; i < 4; i++) scratch[i] = b[4 - i] as number;
      return scratchF32[0] as number;
    } else if (tag === 0xcc && n === 2) return b[1] as number;
    else if (tag === 0xcd && n === 3) return ((b[1] as number) << 8) | (b[2] as number);
    else if (tag === 0xce && n === 5) return (((b[1] as number) << 24) >>> 0) + (((b[2] as number) << 16) | ((b[3] as number) << 8) | (b[4] as number));
    else if (tag === 0xd0 && n === 2) return ((b[1] as number) << 24) >> 24;
    else if (tag === 0xd1 && n === 3) return ((((b[1] as number) << 8) | (b[2] as number)) << 16) >> 16;
    else if (tag === 0xd2 && n === 5) return ((b[1] as number) << 24) | ((b[2] as number) << 16) | ((b[3] as number) << 8) | (b[4] as number);
  }
  return decodeValue(def.type, b) as Cell;
}

/** The store calls, each wrapped by the caller (dbCall: errors to problems). */
export interface MergeIo {
  history(featureIds: readonly number[], entityIds: readonly string[], upTo: number, limit: number): Promise<HistoryRow[]>;
  probe(keys: AsOfKey[]): Promise<(StoredRow | null)[]>;
}

/** An {@link MergeIo} over the offline store `offline()` returns at each call. */
export function storeIo(offline: () => Pick<OfflineStore, "getHistory" | "getAsOf">, call: <T>(what: string, fn: () => Promise<T>) => Promise<T>): MergeIo {
  return {
    history: (f, e, upTo, limit) => call("point-in-time lookup", () => offline().getHistory(f, e, upTo, limit)),
    probe: (keys) => call("point-in-time lookup", () => offline().getAsOf(keys)),
  };
}

/** What one entity type's features hold. */
class TypeHistory {
  /** entity id -> index */
  readonly ids = new Map<string, number>();
  /** per entity: 1 when its histories are held */
  loaded = new Uint8Array(1024);
  /** per (entity, local feature): first history row, and how many */
  start = new Int32Array(1024);
  count = new Int32Array(1024);
  /** feature_id -> local feature index */
  readonly local = new Map<number, number>();
  /** history rows read, and (entity, feature) pairs they covered */
  readRows = 0;
  readPairs = 0;
  /** histories are too long to read whole: probe per key */
  probing = false;

  constructor(
    readonly featureIds: number[],
    /** rows asking per distinct entity, over the request */
    readonly reuse: number,
  ) {
    featureIds.forEach((id, k) => this.local.set(id, k));
  }

  /** History rows per pair worth reading whole, at most. */
  get maxHistory(): number {
    return Math.max(8, Math.ceil(2 * this.reuse));
  }

  clear(): void {
    this.ids.clear();
    this.loaded = new Uint8Array(1024);
    this.start = new Int32Array(1024 * this.featureIds.length);
    this.count = new Int32Array(1024 * this.featureIds.length);
  }

  /** The index of `id`, new ones added (not loaded). */
  index(id: string): number {
    let e = this.ids.get(id);
    if (e === undefined) {
      e = this.ids.size;
      this.ids.set(id, e);
      if (e >= this.loaded.length) {
        const loaded = new Uint8Array(this.loaded.length * 2);
        loaded.set(this.loaded);
        this.loaded = loaded;
        const start = new Int32Array(loaded.length * this.featureIds.length);
        start.set(this.start);
        this.start = start;
        const count = new Int32Array(loaded.length * this.featureIds.length);
        count.set(this.count);
        this.count = count;
      }
    }
    return e;
  }
}

/** The held history rows of every type: event times and decoded values, appended. */
class Held {
  times = new Float64Array(1 << 16);
  cells: Cell[] = [];
  bytes = 0;

  get rows(): number {
    return this.cells.length;
  }

  push(time: number, cell: Cell, bytes: number): void {
    const n = this.cells.length;
    if (n >= this.times.length) {
      const times = new Float64Array(this.times.length * 2);
      times.set(this.times);
      this.times = times;
    }
    this.times[n] = time;
    this.cells.push(cell);
    this.bytes += bytes;
  }

  clear(): void {
    this.times = new Float64Array(1 << 16);
    this.cells = [];
    this.bytes = 0;
  }
}

/** The bounds of an {@link AsOfMerge} (defaults: the constants above; tests make them small). */
export interface MergeLimits {
  heldRows?: number;
  heldBytes?: number;
  readRows?: number;
}

/** One feature's answers for a chunk of rows. */
export interface FeatureAnswers {
  values: Cell[];
  statuses: Status[];
  /** the event time of the row each answer came from (`expired` ones too); NaN when not_found */
  times: Float64Array;
}

/**
 * Answers chunks of an entity dataframe's rows, in order, for features `defs`; `ids(f)` is the
 * id column (null: no lookup) of feature f's entity type over the whole request, `ats` the row
 * times (epoch ms).
 */
export class AsOfMerge {
  private readonly types = new Map<string, TypeHistory>();
  private readonly held = new Held();
  private readonly upTo: number;
  private readonly limits: Required<MergeLimits>;

  constructor(
    private readonly io: MergeIo,
    private readonly defs: readonly Definition[],
    private readonly idColumns: ReadonlyMap<string, readonly (string | null)[]>,
    private readonly ats: Float64Array,
    limits: MergeLimits = {},
  ) {
    this.limits = { heldRows: MAX_CACHED_ROWS, heldBytes: MAX_CACHED_BYTES, readRows: MAX_READ_ROWS, ...limits };
    let upTo = -Infinity;
    for (let r = 0; r < ats.length; r++) if ((ats[r] as number) > upTo) upTo = ats[r] as number;
    this.upTo = upTo;
    for (const [type, col] of idColumns) {
      const distinct = new Set<string>();
      let asked = 0;
      for (const id of col) {
        if (id === null) continue;
        asked++;
        distinct.add(id);
      }
      const featureIds = defs.filter((d) => d.entity_type === type).map((d) => d.id);
      const t = new TypeHistory([...new Set(featureIds)], distinct.size === 0 ? 1 : asked / distinct.size);
      t.clear();
      this.types.set(type, t);
    }
  }

  /** Answers rows [start, start + n), per feature in `defs` order. */
  async answer(start: number, n: number): Promise<FeatureAnswers[]> {
    if (this.held.rows > this.limits.heldRows || this.held.bytes > this.limits.heldBytes) {
      this.held.clear();
      for (const t of this.types.values()) t.clear();
    }
    const entityOf = new Map<string, Int32Array>();
    for (const [type, t] of this.types) {
      const col = this.idColumns.get(type) as readonly (string | null)[];
      const eidx = new Int32Array(n);
      const missing: string[] = [];
      for (let r = 0; r < n; r++) {
        const id = col[start + r];
        if (id === null || id === undefined) {
          eidx[r] = -1;
          continue;
        }
        if (t.probing) {
          eidx[r] = -2;
          continue;
        }
        const known = t.ids.size;
        const e = t.index(id);
        if (e === known) missing.push(id);
        eidx[r] = e;
      }
      if (missing.length > 0) await this.read(t, missing.sort());
      entityOf.set(type, eidx);
    }

    // per-key probes for rows whose entity's history is not held
    const probeSlot = new Int32Array(n * this.defs.length).fill(-1);
    const probeKeys: AsOfKey[] = [];
    for (let f = 0; f < this.defs.length; f++) {
      const def = this.defs[f] as Definition;
      const t = this.types.get(def.entity_type) as TypeHistory;
      const eidx = entityOf.get(def.entity_type) as Int32Array;
      const col = this.idColumns.get(def.entity_type) as readonly (string | null)[];
      for (let r = 0; r < n; r++) {
        const e = eidx[r] as number;
        if (e === -1 || (e >= 0 && t.loaded[e] === 1)) continue;
        probeSlot[f * n + r] = probeKeys.length;
        probeKeys.push({ feature_id: def.id, entity_id: col[start + r] as string, at: this.ats[start + r] as number });
      }
    }
    const probed: (StoredRow | null)[] = [];
    for (let k = 0; k < probeKeys.length; k += PROBE_KEYS) {
      for (const row of await this.io.probe(probeKeys.slice(k, k + PROBE_KEYS))) probed.push(row);
    }

    const { times, cells } = this.held;
    const out: FeatureAnswers[] = new Array(this.defs.length);
    for (let f = 0; f < this.defs.length; f++) {
      const def = this.defs[f] as Definition;
      const t = this.types.get(def.entity_type) as TypeHistory;
      const nk = t.featureIds.length;
      const k = t.local.get(def.id) as number;
      const eidx = entityOf.get(def.entity_type) as Int32Array;
      const ttl = def.ttlMs;
      const values: Cell[] = new Array(n);
      const statuses: Status[] = new Array(n);
      const foundAt = new Float64Array(n);
      for (let r = 0; r < n; r++) {
        const e = eidx[r] as number;
        const at = this.ats[start + r] as number;
        let time = 0;
        let cell: Cell = null;
        let found = false;
        if (e >= 0 && t.loaded[e] === 1) {
          const slot = e * nk + k;
          let lo = t.start[slot] as number;
          let hi = lo + (t.count[slot] as number);
          const first = lo;
          // first held row with event_time > at; the one before it is the answer
          while (lo < hi) {
            const mid = (lo + hi) >>> 1;
            if ((times[mid] as number) <= at) lo = mid + 1;
            else hi = mid;
          }
          if (lo > first) {
            found = true;
            time = times[lo - 1] as number;
            cell = cells[lo - 1] as Cell;
          }
        } else if (e !== -1) {
          const p = probeSlot[f * n + r] as number;
          const row = p >= 0 ? probed[p] : null;
          if (row) {
            found = true;
            time = row.event_time;
            cell = decodePacked(def, row.value);
          }
        }
        foundAt[r] = found ? time : Number.NaN;
        if (!found) {
          values[r] = null;
          statuses[r] = "not_found";
        } else if (ttl !== null && time <= at - ttl) {
          values[r] = null;
          statuses[r] = "expired";
        } else {
          values[r] = cell;
          statuses[r] = "present";
        }
      }
      out[f] = { values, statuses, times: foundAt };
    }
    return out;
  }

  /**
   * Reads and holds the histories of `missing` (sorted, new) entities of type `t`, in reads of
   * about {@link MAX_READ_ROWS} rows (sized by the history per pair seen so far). A read that
   * hits its limit is not used: it is retried with half the entities, and when even one
   * entity's histories average more than `t.maxHistory` rows per feature, `t` probes per key
   * from then on.
   */
  private async read(t: TypeHistory, missing: string[]): Promise<void> {
    const nk = t.featureIds.length;
    const defOf = new Map(this.defs.map((d) => [d.id, d]));
    const limit = 2 * this.limits.readRows;
    let i = 0;
    while (i < missing.length && !t.probing) {
      const perPair = t.readPairs === 0 ? 8 : Math.max(1, t.readRows / t.readPairs);
      let size = Math.max(1, Math.min(MAX_READ_ENTITIES, Math.floor(this.limits.readRows / (nk * perPair))));
      let rows: HistoryRow[];
      for (;;) {
        const batch = missing.slice(i, i + size);
        rows = await this.io.history(t.featureIds, batch, this.upTo, limit);
        if (rows.length < limit) {
          size = batch.length;
          break;
        }
        if (batch.length === 1 || limit / (batch.length * nk) > t.maxHistory) {
          // longer than worth reading whole: the rest of this request probes
          t.probing = true;
          return;
        }
        size = Math.max(1, batch.length >> 1);
      }
      t.readRows += rows.length;
      t.readPairs += size * nk;
      for (let j = 0; j < rows.length; ) {
        const [fid, eid] = rows[j] as HistoryRow;
        const def = defOf.get(fid) as Definition;
        const slot = (t.ids.get(eid) as number) * nk + (t.local.get(fid) as number);
        t.start[slot] = this.held.rows;
        let c = 0;
        for (; j < rows.length && (rows[j] as HistoryRow)[0] === fid && (rows[j] as HistoryRow)[1] === eid; j++, c++) {
          const row = rows[j] as HistoryRow;
          this.held.push(row[2], decodePacked(def, row[4]), row[4].byteLength);
        }
        t.count[slot] = c;
      }
      for (let k = i; k < i + size; k++) t.loaded[t.ids.get(missing[k] as string) as number] = 1;
      i += size;
      // a large read leaves its rows (one array and one buffer each) as garbage: collect it now,
      // or the heap (and RSS) grows by several reads' worth (as materialize does per chunk)
      if (rows.length >= COLLECT_AFTER_ROWS) Bun.gc(true);
    }
  }
}
