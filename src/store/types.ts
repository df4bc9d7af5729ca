/**
 * The store interfaces. Every backend (embedded SQLite, PostgreSQL; in-process cache, Redis)
 * implements them; nothing above this layer knows which one it talks to.
 *
 * Conventions: times are epoch milliseconds; a feature version is identified by its numeric
 * `feature_id`, unique across tenants (so tenant isolation of values follows from ids that only
 * the tenant's own snapshot resolves); values travel in stored form, packed (`Uint8Array`, see
 * registry/dtype.ts), with a 16-byte hash used to recognise identical re-sends.
 */
import type { DtypeName } from "../registry/dtype.ts";

/** A registered feature version as stored. */
export interface DefinitionRow {
  id: number;
  tenant: string;
  name: string;
  version: number;
  dtype: DtypeName;
  entity_type: string;
  ttl_hours: number | null;
  description: string | null;
  owner: string | null;
  tags: Record<string, string>;
  created_at: number;
  updated_at: number;
}

/** A definition to insert (the store assigns the id). */
export type NewDefinition = Omit<DefinitionRow, "id">;

/** Metadata replacement for an existing definition. */
export interface MetadataUpdate {
  id: number;
  description: string | null;
  owner: string | null;
  tags: Record<string, string>;
  updated_at: number;
}

/** What a register transaction decided, given the tenant's current definitions. */
export interface RegisterPlan {
  inserts: NewDefinition[];
  updates: MetadataUpdate[];
}

/** API key record (the key itself is never stored, only its SHA-256). */
export interface KeyRow {
  id: string;
  tenant: string;
  scopes: string[];
  /** hex SHA-256 of the full key */
  hash: string;
  /** first characters of the key, safe to show (`fs_abcd`) */
  prefix: string;
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
}

/** One value to store. */
export interface ValueWrite {
  feature_id: number;
  entity_id: string;
  event_time: number;
  /** packed stored form */
  value: Uint8Array;
  /** 16-byte digest of `value`; identical (feature, entity, event_time, hash) is a re-send */
  value_hash: Uint8Array;
}

/** A value read back. `seq` is the server-assigned write sequence. */
export interface StoredRow {
  event_time: number;
  seq: number;
  value: Uint8Array;
}

/** A value that was newly stored by a write (re-sends are not reported). */
export interface WrittenRow extends StoredRow {
  feature_id: number;
  entity_id: string;
}

/** (feature version, entity) */
export interface ValueKey {
  feature_id: number;
  entity_id: string;
}

/** (feature version, entity, as-of time) */
export interface AsOfKey extends ValueKey {
  at: number;
}

/** What changed in the database since the last notification. */
export interface ChangeSet {
  definitions: boolean;
  keys: boolean;
  /** values written by another process (the in-process cache must forget what it holds) */
  values: boolean;
}

/**
 * The system of record: registry, API keys and the offline history of values (plus the latest
 * value per feature version and entity, maintained in the same transaction as the history).
 */
export interface Database {
  /** `sqlite` or `postgres` */
  readonly kind: "sqlite" | "postgres";
  /** offline sources, load state and materialization jobs */
  readonly sources: SourceStore;
  /** Applies pending migrations; idempotent. Returns the names applied now. */
  migrate(): Promise<string[]>;
  /** Throws a clear Error when the schema is behind the binary's migrations. */
  assertMigrated(): Promise<void>;
  /** Round trip to the store; throws when it is down. */
  ping(): Promise<void>;

  /** Every definition of every tenant (for the in-memory snapshot). */
  loadDefinitions(): Promise<DefinitionRow[]>;
  /**
   * Runs `decide` on the tenant's current definitions inside one serialised transaction and
   * applies the plan it returns (unless `apply` is false). All or nothing.
   */
  registerDefinitions<T>(
    tenant: string,
    decide: (current: DefinitionRow[]) => { plan: RegisterPlan; apply: boolean; result: T },
  ): Promise<{ result: T; inserted: DefinitionRow[] }>;

  createKey(key: KeyRow): Promise<void>;
  /** Keys (revoked included), newest first. */
  listKeys(tenant?: string): Promise<KeyRow[]>;
  /** Marks a key revoked; false when there is no such key or it was already revoked. */
  revokeKey(id: string, at: number): Promise<boolean>;

  /**
   * Stores values in one transaction: history rows (identical re-sends skipped, each new row
   * given the next write sequence) and the latest-value table (replaced only by a value with a
   * greater (event_time, seq)). Returns the newly stored rows.
   */
  writeValues(rows: ValueWrite[]): Promise<WrittenRow[]>;
  /** Latest value per key (greatest event_time, then seq), `null` when never written. */
  getLatest(keys: ValueKey[]): Promise<(StoredRow | null)[]>;
  /** Value current at `at` per key: greatest event_time <= at, then seq. */
  getAsOf(keys: AsOfKey[]): Promise<(StoredRow | null)[]>;

  /** Calls `listener` (at most about once a second late) when another process changed something. */
  watch(listener: (changes: ChangeSet) => void): void;
  close(): Promise<void>;
}

/** A cached latest value; `null` records "never written" (a negative entry). */
export type CachedValue = StoredRow | null;

/** The online cache in front of {@link Database.getLatest}. */
export interface OnlineCache {
  readonly kind: "in_process" | "redis";
  /**
   * Cached entries for one entity type's keys, `undefined` where the cache holds nothing.
   * Throws when the cache is unavailable (callers fall back to the database).
   */
  getMany(tenant: string, entityType: string, keys: ValueKey[]): Promise<(CachedValue | undefined)[]>;
  /**
   * Offers values to the cache; each replaces the cached one only when its (event_time, seq)
   * is greater (a negative entry is replaced by any value). `ttlSeconds` (per entry, optional)
   * bounds how long the cache may keep it.
   */
  putMany(
    tenant: string,
    entityType: string,
    entries: { key: ValueKey; value: CachedValue; ttlSeconds?: number }[],
  ): Promise<void>;
  /** Forgets everything (used when another process wrote to an embedded database). */
  clear(): Promise<void>;
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** A declared offline source as stored (`spec` is its validated definition, see sources/spec.ts). */
export interface SourceRow {
  tenant: string;
  name: string;
  spec: unknown;
  created_at: number;
  updated_at: number;
}

/** Load state of a source: the incremental watermark and the unfinished run, if any. */
export interface SourceStateRow {
  /** greatest event time loaded by a completed run, ms; `null` before the first */
  watermark: number | null;
  /** the unfinished run (arguments, window, position; see sources/materialize.ts), or `null` */
  run: unknown;
  updated_at: number;
}

/** Status of a materialization job. */
export type JobStatus = "queued" | "running" | "succeeded" | "failed" | "cancelled" | "interrupted";

/** A materialization job (one source). */
export interface JobRow {
  id: string;
  tenant: string;
  source: string;
  status: JobStatus;
  /** the run's arguments: start, end, incremental, skip_invalid */
  args: Record<string, unknown>;
  progress: Record<string, unknown>;
  result: Record<string, unknown> | null;
  error: string | null;
  created_at: number;
  updated_at: number;
}

/** Offline sources, their load state and materialization jobs (issue 14). */
export interface SourceStore {
  /** Inserts or replaces the given sources of a tenant, in one transaction. */
  putSources(tenant: string, sources: { name: string; spec: unknown }[], now: number): Promise<void>;
  /** A tenant's sources by name. */
  listSources(tenant: string): Promise<SourceRow[]>;
  getSourceState(tenant: string, name: string): Promise<SourceStateRow | null>;
  /** Sets the given fields of a source's state (a field left out keeps its value). */
  putSourceState(tenant: string, name: string, state: { watermark?: number | null; run?: unknown }, now: number): Promise<void>;
  /** Creates a job; false when the source already has a queued or running job. */
  createJob(job: JobRow): Promise<boolean>;
  /** Updates a job's status/progress/result/error (the fields given). */
  updateJob(id: string, patch: Partial<Pick<JobRow, "status" | "progress" | "result" | "error">>, now: number): Promise<void>;
  getJob(tenant: string, id: string): Promise<JobRow | null>;
  /** A tenant's jobs, newest first (at most `limit`). */
  listJobs(tenant: string, limit: number): Promise<JobRow[]>;
  /** Marks queued or running jobs not updated since `before` as `interrupted` (their process is gone); returns how many. */
  interruptStaleJobs(before: number, now: number): Promise<number>;
}
