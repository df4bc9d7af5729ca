/**
 * Point-in-time retrieval for training data: for every (entity, timestamp) row and feature,
 * the value current at that timestamp. Nothing written with a later event time can leak in.
 */
import type { Stores } from "../store/types.ts";
import type { z } from "@hono/zod-openapi";
import { AppError } from "../errors.ts";
import { LIMITS, type BatchResult as BatchResultSchema } from "../schemas.ts";
import { passthroughColumn, type InputFrame } from "../formats/decode.ts";
import { STRING, TIMESTAMP, type Cell, type FrameChunk, type FrameColumn } from "../formats/frame.ts";
import { formatTime, parseTime } from "../lib/time.ts";
import { entityIdProblem } from "../registry/names.ts";
import type { Definition } from "../registry/snapshot.ts";
import { AsOfMerge, storeIo, type FeatureAnswers } from "./asof-merge.ts";
import { dbCall, type Deps } from "./deps.ts";
import { renderResult, resolveFeatures, resolveFeatureSet, serveAnswer, type ServedValue, type ValueStatus } from "./features.ts";

/** The sorted merge's reads from the offline store, each a database call (timeout, 503 on an outage). */
function mergeIo(deps: Pick<Deps, "log"> & { stores: Pick<Deps["stores"], "offline"> }): ReturnType<typeof storeIo> {
  return storeIo(() => deps.stores.offline, (what, fn) => dbCall(deps, what, fn));
}

/** One requested row: an entity and the time to read it at (epoch ms). */
export interface BatchRow {
  entity_id: string;
  at: number;
}

/** One result row, as the API returns it. */
export type BatchResult = z.output<typeof BatchResultSchema>;

/** Values served per status in one chunk (for `feature_store_lookups_total`). */
export type StatusCounts = Record<ServedValue["status"], number>;

/** One chunk of results, in input order, and what they counted. */
export interface BatchChunk {
  results: BatchResult[];
  counts: StatusCounts;
}

/** Keys (rows x features) per chunk of the answer: bounds memory and each chunk's time, and lets a stream start early. */
export const CHUNK_KEYS = 20_000;

/**
 * Resolves the references up front (so a 400/404 comes before any output), then yields result
 * chunks in input order. Runs in the bulk lane (src/lane): the caller renders each chunk into
 * the answer's format and counts its lookups.
 *
 * The values come from the same sorted merge as an entity dataframe's (./asof-merge.ts): each
 * requested entity's history is read once per request (one range read per batch of entities),
 * and a per-key probe of the store (`getAsOf`) is left for histories too long to be worth reading
 * whole. Measured on PostgreSQL (20,000 rows x 10 features, 20,000 entities with 3 days of
 * history, session 9): probing every key cost the database 4.7-11.4 CPU-s per request, the merge
 * 0.8-1.6; on a machine the database shares, that CPU is what online lookups waited behind.
 */
export function lookupBatch(
  deps: Pick<Deps, "registry" | "log"> & { stores: Pick<Stores, "offline"> },
  tenant: string,
  rows: readonly BatchRow[],
  featureNames: readonly string[],
  chunkKeys = CHUNK_KEYS,
): AsyncGenerator<BatchChunk> {
  const { refs, defs, entityType } = resolveFeatures(deps.registry.current, tenant, featureNames);
  return (async function* () {
    const nf = defs.length;
    const chunkRows = Math.max(1, Math.floor(chunkKeys / Math.max(1, nf)));
    const ats = Float64Array.from(rows, (r) => r.at);
    const merge = new AsOfMerge(
      mergeIo(deps),
      defs,
      new Map([[entityType, rows.map((r) => r.entity_id)]]),
      ats,
    );
    const served: ServedValue[] = new Array(nf);
    for (let start = 0; start < rows.length; start += chunkRows) {
      const n = Math.min(chunkRows, rows.length - start);
      const answers = await merge.answer(start, n);
      const counts: StatusCounts = { present: 0, not_found: 0, expired: 0 };
      const out: BatchResult[] = new Array(n);
      for (let r = 0; r < n; r++) {
        const row = rows[start + r] as BatchRow;
        for (let f = 0; f < nf; f++) {
          const a = answers[f] as FeatureAnswers;
          const s = serveAnswer(defs[f] as Definition, a.statuses[r] as ValueStatus, a.values[r], a.times[r] as number);
          counts[s.status]++;
          served[f] = s;
        }
        out[r] = { entity_id: row.entity_id, timestamp: formatTime(row.at), ...renderResult(refs, served) };
      }
      yield { results: out, counts };
    }
  })();
}

// ---------------------------------------------------------------- entity dataframes

/** How a dataframe request names its columns. */
export interface FrameOptions {
  /** feature references, in output order (duplicates collapse) */
  featureNames: readonly string[];
  /** entity type -> column holding its ids; a type not listed uses `<type>_id`, then `<type>`, then `entity_id` */
  entityColumns?: Readonly<Record<string, string>>;
  /** the column of row timestamps; default `timestamp`, then `event_timestamp` */
  timestampColumn?: string;
}

/** Suffix of a feature's status column (`user_age__status`). */
export const STATUS_SUFFIX = "__status";

/** A dataframe query, validated: its output columns and the chunks that fill them, in input order. */
export interface FrameQuery {
  columns: FrameColumn[];
  rows: number;
  /** chunks of rows, each with the values it served per status (for `feature_store_lookups_total`: the caller counts them) */
  chunks: AsyncGenerator<FrameChunk & { counts: StatusCounts }>;
}

function frameError(message: string, path: string): AppError {
  return new AppError("invalid_request", message, { errors: [{ path, message }] });
}

/** The column holding `entityType`'s ids, by the request's mapping or the defaults. */
function entityColumn(names: readonly string[], entityType: string, opts: FrameOptions, single: boolean): number {
  const explicit = opts.entityColumns?.[entityType];
  const candidates = explicit !== undefined ? [explicit] : [`${entityType}_id`, entityType, ...(single ? ["entity_id"] : [])];
  for (const c of candidates) {
    const i = names.indexOf(c);
    if (i >= 0) return i;
  }
  const path = explicit !== undefined ? `entity_columns.${entityType}` : "(columns)";
  throw frameError(
    `missing entity column for entity type ${entityType}: no column ${candidates.map((c) => JSON.stringify(c)).join(" or ")}${explicit === undefined ? ` (name it in entity_columns.${entityType})` : ""}`,
    path,
  );
}

/** An entity id cell as the key it is looked up by; `null` (no lookup: not_found) for a null or empty id. */
function idOf(v: unknown, column: string, row: number): string | null {
  if (v === null || v === undefined || v === "") return null;
  if (typeof v === "string") {
    const p = entityIdProblem(v);
    if (p) throw frameError(`row ${row}, column ${column}: ${p}`, `rows[${row}].${column}`);
    return v;
  }
  if (typeof v === "number" && Number.isSafeInteger(v)) return String(v);
  if (typeof v === "bigint") return v.toString();
  throw frameError(`row ${row}, column ${column}: an entity id must be a string or an integer`, `rows[${row}].${column}`);
}

/** A row timestamp cell as epoch ms. */
function timeOf(v: unknown, column: string, row: number): number {
  if (v instanceof Date && Number.isFinite(v.getTime())) return v.getTime();
  if (typeof v === "string") {
    const t = parseTime(v);
    if (t !== null) return t;
  }
  throw frameError(`row ${row}, column ${column}: ${v === null || v === undefined ? "missing timestamp" : `bad timestamp ${JSON.stringify(String(v)).slice(0, 80)}`} (expected RFC 3339)`, `rows[${row}].${column}`);
}

/**
 * Validates an entity-dataframe query (features of any entity types, each joined on its own id
 * column; every other column passed through) and returns its output columns and a generator of
 * result chunks: the input columns in input order (the timestamp column as a timestamp), then per
 * feature its value (typed by dtype) and `<ref>__status`. Every 400/404 comes before any output.
 * The values come from a sorted merge of the rows with each entity's history, read once per
 * request (./asof-merge.ts).
 */
export function lookupFrame(deps: Pick<Deps, "registry" | "log"> & { stores: Pick<Stores, "offline"> }, tenant: string, frame: InputFrame, opts: FrameOptions): FrameQuery {
  const { refs, defs } = resolveFeatureSet(deps.registry.current, tenant, opts.featureNames);
  if (frame.rows > LIMITS.frameRows) throw frameError(`at most ${LIMITS.frameRows} rows per request`, "rows");
  const { names } = frame;
  const tsName = opts.timestampColumn ?? (names.includes("timestamp") ? "timestamp" : names.includes("event_timestamp") ? "event_timestamp" : "timestamp");
  const tsIndex = names.indexOf(tsName);
  if (tsIndex < 0) throw frameError(`missing timestamp column ${JSON.stringify(tsName)}${opts.timestampColumn ? "" : " (or event_timestamp; name another in timestamp_column)"}`, "timestamp_column");
  for (const ref of refs) {
    for (const out of [ref, `${ref}${STATUS_SUFFIX}`]) {
      if (names.includes(out)) throw frameError(`input column ${JSON.stringify(out)} collides with an output column of feature ${ref}; rename it`, `(columns).${out}`);
    }
  }
  const types = [...new Set(defs.map((d) => d.entity_type))];
  const idColumnOf = new Map(types.map((t) => [t, entityColumn(names, t, opts, types.length === 1)]));
  for (const t of Object.keys(opts.entityColumns ?? {})) {
    if (!idColumnOf.has(t)) throw frameError(`entity_columns names entity type ${t}, which none of the requested features has`, `entity_columns.${t}`);
  }

  // everything below is O(rows) validation up front, so a bad row is a 400 before any output
  const ats = new Float64Array(frame.rows);
  const tsCol = frame.columns[tsIndex] as unknown[];
  for (let r = 0; r < frame.rows; r++) ats[r] = timeOf(tsCol[r], tsName, r);
  const ids = new Map<string, (string | null)[]>();
  for (const [t, c] of idColumnOf) {
    const col = frame.columns[c] as unknown[];
    ids.set(t, Array.from(col, (v, r) => idOf(v, names[c] as string, r)));
  }
  const inputs = names.map((name, c) => {
    if (c === tsIndex) return { column: { name, type: TIMESTAMP }, cells: Array.from(ats) as Cell[] };
    const p = passthroughColumn(frame.columns[c] as unknown[], frame.types[c] ?? null, frame.textual);
    return { column: { name, type: p.type }, cells: p.cells };
  });
  const columns: FrameColumn[] = [...inputs.map((i) => i.column)];
  for (let f = 0; f < refs.length; f++) {
    columns.push({ name: refs[f] as string, type: (defs[f] as Definition).type }, { name: `${refs[f]}${STATUS_SUFFIX}`, type: STRING, dictionary: true });
  }

  const merge = new AsOfMerge(
    mergeIo(deps),
    defs,
    ids,
    ats,
  );
  // the generator holds what it needs, not the decoded frame (its text cells are garbage once
  // converted); a large frame's decoding garbage is collected before the answer's work piles on
  const rowCount = frame.rows;
  if (rowCount >= COLLECT_FRAME_ROWS) Bun.gc(true);
  const chunks = (async function* () {
    const nf = defs.length;
    // chunks big enough for efficient row groups / record batches, bounded in cells
    const chunkRows = Math.max(256, Math.min(FRAME_CHUNK_ROWS, Math.floor(FRAME_CHUNK_KEYS / nf)));
    for (let start = 0; start < rowCount; start += chunkRows) {
      const n = Math.min(chunkRows, rowCount - start);
      const answers = await merge.answer(start, n);
      const counts: StatusCounts = { present: 0, not_found: 0, expired: 0 };
      const out: Cell[][] = inputs.map((i) => i.cells.slice(start, start + n));
      for (const a of answers) {
        for (let r = 0; r < n; r++) counts[a.statuses[r] as ValueStatus]++;
        out.push(a.values, a.statuses);
      }
      yield { rows: n, columns: out, counts };
      // the encoders' garbage (a chunk's cell arrays and buffers), collected every few chunks:
      // left to itself the heap grew past 1 GiB over a 1M-row answer (every 8 chunks: 1,017 MiB
      // peak; every 4: 793 MiB, no slower, measured side by side at 1M x 50)
      if ((start / chunkRows) % COLLECT_EVERY_CHUNKS === COLLECT_EVERY_CHUNKS - 1) Bun.gc(true);
    }
  })();
  return { columns, rows: frame.rows, chunks };
}

/** A frame of at least this many rows is followed by a collection once decoded and validated. */
const COLLECT_FRAME_ROWS = 100_000;
/** Chunks between two collections of an answer's garbage. */
const COLLECT_EVERY_CHUNKS = 4;
/** Rows per dataframe chunk at most (each is one Parquet row group / Arrow record batch). */
const FRAME_CHUNK_ROWS = 8_192;
/** Rows x features per dataframe chunk, at most (bounds a chunk's memory: 8,192 rows up to 64 features). */
const FRAME_CHUNK_KEYS = 524_288;
