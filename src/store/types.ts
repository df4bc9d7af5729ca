/**
 * The store interfaces, one per role: {@link RegistryStore} (definitions, keys, change feed,
 * migrations), {@link OfflineStore} (value history, point-in-time reads, the latest-value
 * table) and {@link OnlineStore} (latest values, compare-and-set). Every backend (embedded
 * SQLite, PostgreSQL; in-process, Redis) implements one or more of them; nothing above this
 * layer knows which one it talks to, and callers ask for capabilities, never for a backend.
 *
 * Conventions: times are epoch milliseconds; a feature version is identified by its numeric
 * `feature_id`, unique across tenants (so tenant isolation of values follows from ids that only
 * the tenant's own snapshot resolves); values travel in stored form, packed (`Uint8Array`, see
 * registry/dtype.ts), with a 16-byte hash used to recognise identical re-sends.
 */
import type { DefinitionRow, MetadataUpdate, NewDefinition, RegisterPlan } from "../registry/definition.ts";
import type { GroupKind, GroupRow, GroupSpec, NewGroup } from "../registry/group.ts";

export type { DefinitionRow, GroupKind, GroupRow, GroupSpec, MetadataUpdate, NewDefinition, NewGroup, RegisterPlan };

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

/** What one input row of a write became (`writeValues` answers one per row, in input order). */
export interface RowOutcome {
  /** the row's write sequence: newly assigned, or that of the identical row stored before */
  seq: number;
  /** `stored`: newly stored; `identical`: the same value was already stored (a re-send) */
  status: "stored" | "identical";
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

/**
 * One stored value of a history read ({@link OfflineStore.getHistory}): feature version, entity,
 * event time, write sequence, packed value. A tuple, as the drivers hand rows out.
 */
export type HistoryRow = [feature_id: number, entity_id: string, event_time: number, seq: number, value: Uint8Array];

/** What changed in the database since the last notification. */
/** Changes a sibling connection of this process (a bulk-lane thread) commits: values (writes) and definitions (registrations). */
export type OwnChangeKind = "values" | "definitions";

export interface ChangeSet {
  definitions: boolean;
  keys: boolean;
  /** values written by another process (the in-process cache must forget what it holds) */
  values: boolean;
  /** the tenants whose definitions changed, when the feed knows; absent: any may have */
  tenants?: readonly string[];
  /** the entities whose values another process changed, when the feed knows (SQLite); absent: any may have */
  entities?: readonly EntityRef[];
}

/** One entity of one tenant: the unit an in-process cache forgets when another process writes. */
export interface EntityRef {
  tenant: string;
  entity_type: string;
  entity_id: string;
}

/** What a {@link RegistryStore} offers beyond its interface. Callers branch on these, never on a backend's name. */
export interface RegistryCapabilities {
  /**
   * The store belongs to this installation (a file under DATA_DIR): every command applies
   * pending migrations itself. Otherwise `feature-store migrate` is a deployment step and the
   * other commands only check that it ran.
   */
  readonly embedded: boolean;
}

/** What a catalog registration (features, views and services together) decided. */
export interface CatalogPlan extends RegisterPlan {
  groupInserts: NewGroup[];
  /** metadata replacements; `id` is a group id */
  groupUpdates: MetadataUpdate[];
}

/**
 * Registry additions for views and services (every {@link RegistryStore} implements them).
 * Both bump the `definitions` change counter, so other processes reload their snapshot.
 */
export interface GroupStore {
  /** Every view and service of one tenant, or of every tenant (for the in-memory snapshot). */
  loadGroups(tenant?: string): Promise<GroupRow[]>;
  /**
   * As {@link RegistryStore.registerDefinitions}, for features, views and services together: one
   * serialised transaction, all or nothing.
   */
  registerCatalog<T>(
    tenant: string,
    decide: (defs: DefinitionRow[], groups: GroupRow[]) => { plan: CatalogPlan; apply: boolean; result: T },
  ): Promise<{ result: T; inserted: DefinitionRow[]; insertedGroups: GroupRow[] }>;
}

/**
 * Role 1, the registry: feature definitions, API keys, the change feed that tells other
 * processes about them, and the schema migrations of the system of record.
 */
export interface RegistryStore extends GroupStore {
  /** The backend's short name for logs and messages (`sqlite`, `postgres`); never branch on it. */
  readonly name: string;
  readonly capabilities: RegistryCapabilities;
  /** offline sources, their load state and materialization jobs (issue 14) */
  readonly sources: SourceStore;
  /** Applies pending migrations; idempotent. Returns the names applied now. */
  migrate(): Promise<string[]>;
  /** Throws a clear Error when the schema is behind the binary's migrations. */
  assertMigrated(): Promise<void>;
  /** Round trip to the store; throws when it is down. */
  ping(): Promise<void>;

  /** Every definition of one tenant, or of every tenant (for the in-memory snapshot). */
  loadDefinitions(tenant?: string): Promise<DefinitionRow[]>;
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

  /** Calls `listener` (at most about once a second late) when another process changed something. */
  watch(listener: (changes: ChangeSet) => void): void;

  // Sibling connections: the bulk lane's worker threads open their own connection to the same
  // database; their commits are this process's own, not another process's (the change feed must
  // not make the in-process cache forget everything after each bulk write).
  /** Identity of this connection's change notifications (PostgreSQL); a connection opened with the same `changeOrigin` is one of ours. */
  readonly changeOrigin?: string;
  /**
   * Memory shared by the connections of one process (SQLite): a sibling opened with the main
   * connection's ledger records each change-counter version it bumps there before its commit,
   * so the main connection's change feed knows the commit is this process's own the moment it
   * becomes visible (the `takeOwnChanges` receipts arrive a message later).
   */
  readonly ownChangeLedger?: SharedArrayBuffer;
  /** The change-counter versions of `kind` this connection committed since the last call (SQLite): pass them to the main connection's `adoptOwnChanges`. */
  takeOwnChanges?(kind: OwnChangeKind): number[];
  /** Counts a sibling's commits (its `takeOwnChanges`) as this process's own (SQLite). */
  adoptOwnChanges?(kind: OwnChangeKind, versions: readonly number[]): void;
  /**
   * Looks for other processes' changes now, calling the listeners before it returns (a cheap
   * check when nothing changed). Stores whose feed is pushed to them leave it out.
   */
  pollNow?(): void;
  close(): Promise<void>;
}

/**
 * Role 2, the offline store: the append-only history of values (point-in-time reads, retention
 * by the backend's own rules) and, maintained in the same transaction, the latest value per
 * feature version and entity: the authority the online store falls back to.
 */
export interface OfflineStore {
  /**
   * Stores values in one transaction: history rows (identical re-sends skipped, each new row
   * given the next write sequence, in input order) and the latest values (replaced only by a
   * value with a greater (event_time, seq): a table kept by compare-and-set on PostgreSQL, the
   * newest history row of each key on SQLite). Answers what each input row became, in input
   * order: its sequence, and whether it was newly stored or identical to a stored row (an
   * identical row repeated within `rows` is stored once; the repeats are `identical`).
   * The call's timeout grows with the size of the write.
   */
  writeValues(rows: ValueWrite[]): Promise<RowOutcome[]>;
  /** Latest value per key (greatest event_time, then seq), `null` when never written. */
  getLatest(keys: ValueKey[]): Promise<(StoredRow | null)[]>;
  /** Value current at `at` per key: greatest event_time <= at, then seq. */
  getAsOf(keys: AsOfKey[]): Promise<(StoredRow | null)[]>;
  /**
   * Every stored value of the given feature versions for the given entities with event time <=
   * `upTo` (all of each pair's history up to then, in one read), grouped by (feature_id,
   * entity_id) (the groups in any order), each group in (event_time, seq) order: the input of a
   * sorted merge with many as-of keys per pair (training data, serving/asof-merge.ts). At most
   * `limit` rows: a caller given `limit` rows knows the read stopped short. The call's timeout
   * is the bulk one.
   */
  getHistory(featureIds: readonly number[], entityIds: readonly string[], upTo: number, limit: number): Promise<HistoryRow[]>;
  ping(): Promise<void>;
  close(): Promise<void>;
}

/**
 * A system of record: one backend (embedded SQLite, PostgreSQL) playing the registry and offline
 * roles over one schema, so a registration and the values that use it share transactions.
 */
export interface Database extends RegistryStore, OfflineStore {}

/** A cached latest value; `null` records "never written" (a negative entry). */
export type CachedValue = StoredRow | null;

/** What an {@link OnlineStore} offers beyond its interface. Callers branch on these, never on a backend's name. */
export interface OnlineCapabilities {
  /**
   * Every serving and worker process sees the same contents (Redis): worth writing to from a
   * worker, worth pinging for readiness, and writes by another process need not clear it.
   * When false (in-process) the store is private to this process.
   */
  readonly sharedAcrossProcesses: boolean;
  /**
   * `getMany` hands out the stored row objects themselves, the same object for as long as the
   * value is current, so forms derived from a row (its JSON) may be memoised on it.
   */
  readonly stableRows: boolean;
}

/**
 * Role 3, the online store: latest values keyed by (feature version, entity), each replaced only
 * through a compare-and-set on (event_time, seq). It may forget entries (it is bounded, and
 * Redis may evict or lose them); a miss is answered from {@link OfflineStore.getLatest} and
 * written back. Backends: in-process (memory/), Redis and Redis Cluster (redis/).
 */
export interface OnlineStore {
  /** The backend's short name for logs and messages (`in_process`, `redis`); never branch on it. */
  readonly name: string;
  readonly capabilities: OnlineCapabilities;
  /**
   * Stored entries for one entity type's keys, `undefined` where the store holds nothing.
   * Throws when the store is unavailable (callers fall back to the offline store).
   */
  getMany(tenant: string, entityType: string, keys: ValueKey[]): Promise<(CachedValue | undefined)[]>;
  /**
   * {@link getMany} answered synchronously, by a store held in this process (no I/O): the online
   * lookup then answers without a promise when every key is held.
   */
  getManyNow?(tenant: string, entityType: string, keys: ValueKey[]): (CachedValue | undefined)[];
  /**
   * {@link getManyNow} of every feature version of `featureIds` for each of `entityIds`
   * (entity-major: entity e, feature f at e * featureIds.length + f), without a key per value.
   */
  getEntitiesNow?(tenant: string, entityType: string, entityIds: readonly string[], featureIds: readonly number[]): (CachedValue | undefined)[];
  /**
   * Offers values; each replaces the stored one only when its (event_time, seq) is greater (a
   * negative entry is replaced by any value). `ttlSeconds` (per entry, optional) bounds how long
   * the store may keep it.
   */
  putMany(
    tenant: string,
    entityType: string,
    entries: { key: ValueKey; value: CachedValue; ttlSeconds?: number }[],
  ): Promise<void>;
  /** Forgets everything (used when another process wrote to the offline store). */
  clear(): Promise<void>;
  /** Forgets what it holds of these entities, synchronously (another process changed their values); a store that cannot, lacks it. */
  invalidateEntities?(entities: readonly EntityRef[]): void;
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** The three roles one process works with, opened together from the configuration (src/stores.ts). */
export interface Stores {
  registry: RegistryStore;
  offline: OfflineStore;
  online: OnlineStore;
  /** Closes every store once (the registry and offline roles may be one backend). */
  close(): Promise<void>;
}

/** One sliding-window check, as a {@link WindowStore} answers it. */
export interface WindowHit {
  /** Whether the request fitted (and was counted). */
  allowed: boolean;
  /** Requests counted in the current fixed window before this one. */
  cur: number;
  /** Requests counted in the previous fixed window. */
  prev: number;
  /** Milliseconds since the current fixed window began. */
  elapsedMs: number;
}

/**
 * Rate-limit counts, shared by every server (Redis, store/redis/rate-counter.ts): requests per
 * id in fixed windows of the store's own clock; the sliding estimate is derived.
 */
export interface WindowStore {
  /**
   * Atomically: with `w` = the current window of length `windowMs`, reads the counts of `w`
   * and `w - 1` for `id`; when `prev * (1 - elapsed / windowMs) + cur + 1 <= limit`, counts one
   * more request in `w`. Refused requests are not counted.
   */
  hit(id: string, limit: number, windowMs: number): Promise<WindowHit>;
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
