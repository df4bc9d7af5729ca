/**
 * Messages between the serving thread and a bulk-lane worker. Request bodies travel as raw
 * bytes (transferred, never copied or parsed on the serving thread); answers come back as
 * rendered bytes, one chunk per message, the next chunk computed only when the serving thread
 * asks for it (so a slow reader holds back the work, not memory).
 */
import type { Config } from "../config.ts";
import type { ErrorCode, FieldError } from "../errors.ts";
import type { StatusCounts } from "../serving/batch.ts";
import type { CatalogOutcome, GroupItem } from "../serving/catalog.ts";
import type { RegisterItem, RegisterOutcome } from "../serving/register.ts";

/** Sent once, first: how to open the worker's own store connection. */
export interface InitMessage {
  t: "init";
  config: Config;
  /** the main connection's `changeOrigin` (PostgreSQL), so the worker's commits count as this process's */
  changeOrigin: string | undefined;
  /** the main connection's `ownChangeLedger` (SQLite), likewise */
  ownChangeLedger: SharedArrayBuffer | undefined;
  /** keys per chunk of a batch (undefined: serving/batch.ts CHUNK_KEYS) */
  chunkKeys: number | undefined;
}

/** A point-in-time batch: the raw request body and how to answer. */
export interface BatchJob {
  t: "batch";
  id: number;
  tenant: string;
  /** registry generation of the serving thread: a worker behind it reloads first */
  gen: number;
  body: Uint8Array;
  /** the request's Accept and Content-Type headers and query parameters (serving/batch-request.ts reads them) */
  accept: string | undefined;
  contentType: string | undefined;
  query: Record<string, string[]>;
  requestId: string;
}

/** A write: the raw request body; `now` stands for a missing event_time. */
export interface WriteJob {
  t: "write";
  id: number;
  tenant: string;
  gen: number;
  body: Uint8Array;
  now: number;
  /** the body's form: `write` (POST /api/v1/features/write) or another accepted one (jobs.ts WriteForms) */
  form: string;
}

/**
 * A registration: features (`register` route, `registerFeatures`) or views and services
 * (`registerCatalog`), already schema-valid (small bodies, validated on the serving thread). Its
 * store transaction runs here, so the serving thread never waits on the database's write lock.
 */
export type RegisterJob = { t: "register"; id: number; tenant: string; gen: number; /** the serving thread's clock (created_at, updated_at) */ now: number } & RegisterWhat;

/** What a registration registers. */
export type RegisterWhat = { what: "features"; items: RegisterItem[] } | { what: "catalog"; features: RegisterItem[]; groups: GroupItem[] };

/** The writes of the source store (materialize jobs' rows) that the serving thread makes: run on a lane thread. */
export type SourceWriteOp = "createJob" | "updateJob" | "interruptStaleJobs";

/** One write of the source store, with the method's arguments. */
export interface SourceWriteJob {
  t: "sources";
  id: number;
  op: SourceWriteOp;
  args: unknown[];
}

/** Serving thread -> worker. */
export type ToWorker = InitMessage | BatchJob | WriteJob | RegisterJob | SourceWriteJob | { t: "pull"; id: number } | { t: "cancel"; id: number } | { t: "close" };

/** A failure to report: an AppError's fields, or `internal` (details stay in the worker's log). */
export interface JobProblem {
  code: ErrorCode;
  message: string;
  errors?: FieldError[] | undefined;
}

/**
 * The rows a write accepted (newly stored or identical to a stored row), column by column (cheap
 * to hand over), each with the write sequence the store gave it: exactly what the serving thread
 * needs to offer them to its online store.
 */
export interface PackedRows {
  featureIds: Float64Array;
  entityIds: string[];
  eventTimes: Float64Array;
  seqs: Float64Array;
  /** value i is bytes[offsets[i], offsets[i + 1]) */
  offsets: Uint32Array;
  bytes: Uint8Array;
}

/** Outcome of a write. */
export interface WriteOutcome {
  /** values accepted (identical re-sends and older values included) */
  written: number;
  /** the accepted rows per entity type (one part for a native write; a Feast push may span several views) */
  parts: { entityType: string; rows: PackedRows }[];
  /** TTL per feature id, ms (null: none) */
  ttls: [number, number | null][];
  /** the worker connection's commits of values (SQLite), for the main connection to adopt */
  valuesChanges: number[];
  /**
   * The values were offered to the online store by the worker itself (a store shared across
   * processes, Redis, on the worker's own connection): `parts` is empty and this many failed.
   */
  offeredFailures?: number;
}

/** Worker -> serving thread. */
export type FromWorker =
  | { t: "ready" }
  | { t: "init_failed"; message: string }
  | { t: "chunk"; id: number; contentType: string; bytes: Uint8Array; counts: StatusCounts | undefined; last: boolean }
  | { t: "written"; id: number; outcome: WriteOutcome }
  | { t: "registered"; id: number; outcomes: (RegisterOutcome | CatalogOutcome)[]; ok: boolean; /** the worker connection's commits of definitions (SQLite), for the main connection to adopt */ definitionsChanges: number[] }
  | { t: "done"; id: number; result: unknown }
  | { t: "failed"; id: number; problem: JobProblem };
