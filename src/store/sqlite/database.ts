/**
 * The embedded database: one SQLite file under DATA_DIR (WAL, busy timeout), shared safely by a
 * running server and the CLI. Other processes' commits are noticed through `PRAGMA data_version`
 * and the `change_counters` table; `definition_changes` says which tenant each definitions
 * version was for, so a registration reloads only its tenant elsewhere, and `value_changes`
 * which entities each values version changed, so a write makes the other processes' in-process
 * caches forget only those entities.
 */
import { Database as Sqlite, type Statement } from "bun:sqlite";
import { mkdirSync, openSync, readSync } from "node:fs";
import { join } from "node:path";
import { sqliteMigrations } from "../../../migrations/index.ts";
import type { DefinitionRecord } from "../../registry/definition.ts";
import type { DtypeName } from "../../registry/dtype.ts";
import { StoreUnavailable } from "../errors.ts";
import { migrationChecksum, pendingMigrations, type AppliedMigration } from "../migrations.ts";
import { SqliteSourceStore } from "./sources.ts";
import { SqliteGroups } from "./groups.ts";
import { columnsOf, keyOrder, SqliteValueWriter, type ValueColumns, type WrittenColumns } from "./value-writer.ts";
import type {
  AsOfKey,
  CatalogPlan,
  GroupRow,
  ChangeSet,
  HistoryRow,
  Database,
  DefinitionRow,
  EntityRef,
  KeyRow,
  RegisterPlan,
  RegistryCapabilities,
  StoredRow,
  ValueKey,
  ValueWrite,
  RowOutcome,
  OwnChangeKind,
  SourceStore,
} from "../types.ts";

type ChangeKind = "definitions" | "keys" | "values";

/** SQLite result codes of a database that cannot answer now (busy or locked past the busy timeout, I/O, full disk). */
const UNAVAILABLE_CODES = /^SQLITE_(BUSY|LOCKED|IOERR|FULL|CANTOPEN)/;

interface KeyRecord {
  id: string;
  tenant: string;
  scopes: string;
  hash: string;
  prefix: string;
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
}

function toDefinition(r: DefinitionRecord): DefinitionRow {
  return { ...r, dtype: r.dtype as DtypeName, tags: JSON.parse(r.tags) as Record<string, string> };
}

function toKey(r: KeyRecord): KeyRow {
  return { ...r, scopes: r.scopes.split(",").filter(Boolean) };
}

/** Options of {@link SqliteDatabase}. */
export interface SqliteOptions {
  /** directory holding `feature-store.db` (created when missing) */
  dataDir: string;
  /** how often to look for other processes' commits, ms */
  pollIntervalMs?: number;
  /** the main connection's {@link OwnChangeLedger} buffer, when this is a sibling (a bulk-lane thread) */
  ownChangeLedger?: SharedArrayBuffer | undefined;
}

/** Change kinds a sibling connection records in the ledger, and their rows in it. */
const LEDGER_KINDS: Record<OwnChangeKind, number> = { values: 0, definitions: 1 };
/** Versions kept per kind: more sibling commits than this between two polls count as foreign (a cache cleared, never a change missed). */
const LEDGER_SIZE = 1024;

/**
 * The counter versions the connections of one process bumped, in memory they all share
 * (SharedArrayBuffer): a sibling records a version inside its transaction, before the commit,
 * so the main connection never mistakes the commit for another process's. Per kind: a count
 * (the next slot) and a ring of LEDGER_SIZE versions.
 */
class OwnChangeLedger {
  private readonly a: BigInt64Array;
  constructor(readonly buffer: SharedArrayBuffer = new SharedArrayBuffer(8 * 2 * (LEDGER_SIZE + 1))) {
    this.a = new BigInt64Array(buffer);
  }

  record(kind: OwnChangeKind, version: number): void {
    const base = LEDGER_KINDS[kind] * (LEDGER_SIZE + 1);
    const slot = Number(Atomics.add(this.a, base, 1n) % BigInt(LEDGER_SIZE));
    Atomics.store(this.a, base + 1 + slot, BigInt(version));
  }

  /** Versions of `kind` above `after` recorded (among the last LEDGER_SIZE). */
  since(kind: OwnChangeKind, after: number): Set<number> {
    const base = LEDGER_KINDS[kind] * (LEDGER_SIZE + 1);
    const out = new Set<number>();
    for (let i = 0; i < LEDGER_SIZE; i++) {
      const v = Number(Atomics.load(this.a, base + 1 + i));
      if (v > after) out.add(v);
    }
    return out;
  }
}

/** Versions of the definitions counter whose tenant is kept (a process further behind reloads every tenant). */
const TENANT_CHANGES_KEPT = 1024;
/** Versions of the values counter whose entities are kept (a process further behind forgets its whole cache). */
const VALUE_CHANGES_KEPT = 1024;
/** Entities one write names at most; a write changing more records "everything" (a bulk load forgets every cache). */
const VALUE_CHANGES_MAX_ENTITIES = 256;
/** Entities one notice names at most; more foreign changes than that forget the whole cache (cheaper than naming them). */
const VALUE_CHANGES_MAX_NOTICE = 16_384;

/** {@link Database} on an embedded SQLite file. */
export class SqliteDatabase implements Database {
  readonly name = "sqlite";
  readonly capabilities: RegistryCapabilities = { embedded: true };
  readonly path: string;
  private readonly db: Sqlite;
  private readonly known: Record<ChangeKind, number> = { definitions: 0, keys: 0, values: 0 };
  private dataVersion = 0;
  private timer: ReturnType<typeof setInterval> | undefined;
  private readonly listeners: ((c: ChangeSet) => void)[] = [];
  private readonly pollIntervalMs: number;
  private prepared: ReturnType<SqliteDatabase["prepare"]> | undefined;
  readonly sources: SourceStore;
  /** Counter versions committed by sibling connections of this process, not yet passed, per kind. */
  private readonly adopted: Record<OwnChangeKind, Set<number>> = { values: new Set(), definitions: new Set() };
  /** Counter versions of this connection's commits, until taken (recorded once taken first), per kind. */
  private readonly receipts: Partial<Record<OwnChangeKind, number[]>> = {};
  /** Versions bumped by this process's connections, shared with its siblings. */
  private readonly ledger: OwnChangeLedger;
  /** The bulk write's statements (value-writer.ts), once the schema is migrated. */
  private valueWriter: SqliteValueWriter | undefined;

  constructor(opts: SqliteOptions) {
    mkdirSync(opts.dataDir, { recursive: true });
    this.path = join(opts.dataDir, "feature-store.db");
    this.db = new Sqlite(this.path, { create: true, strict: true });
    this.db.exec("PRAGMA busy_timeout = 5000");
    this.db.exec("PRAGMA journal_mode = WAL");
    this.db.exec("PRAGMA synchronous = NORMAL");
    this.pollIntervalMs = opts.pollIntervalMs ?? 200;
    this.ledger = new OwnChangeLedger(opts.ownChangeLedger);
    this.sources = this.guardSources(new SqliteSourceStore(this.db));
  }

  private prepare() {
    const q = (sql: string): Statement => this.db.prepare(sql);
    return {
      defsAll: q("SELECT * FROM feature_definitions ORDER BY id"),
      defsTenant: q("SELECT * FROM feature_definitions WHERE tenant = ? ORDER BY id"),
      defInsert: q(
        `INSERT INTO feature_definitions (tenant, name, version, dtype, entity_type, ttl_hours, description, owner, tags, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
      ),
      defUpdate: q("UPDATE feature_definitions SET description = ?, owner = ?, tags = ?, updated_at = ? WHERE id = ?"),
      bump: q("UPDATE change_counters SET version = version + 1 WHERE kind = ? RETURNING version"),
      counters: q("SELECT kind, version FROM change_counters"),
      tenantChanged: q("INSERT INTO definition_changes (version, tenant) VALUES (?, ?)"),
      tenantChangesPrune: q("DELETE FROM definition_changes WHERE version <= ?"),
      tenantChanges: q("SELECT tenant FROM definition_changes WHERE version > ? AND version <= ?"),
      featureScope: q("SELECT tenant, entity_type FROM feature_definitions WHERE id = ?"),
      // the entities travel as one JSON array [[tenant, entity_type, entity_id], ...]; [] records "everything"
      valueChanged: q(
        `INSERT INTO value_changes (version, tenant, entity_type, entity_id)
         SELECT ?1, value ->> 0, value ->> 1, value ->> 2 FROM json_each(?2)
         UNION ALL SELECT ?1, NULL, NULL, NULL WHERE json_array_length(?2) = 0`,
      ),
      valueChangesPrune: q("DELETE FROM value_changes WHERE version <= ?"),
      valueChanges: q("SELECT version, tenant, entity_type, entity_id FROM value_changes WHERE version >= ? AND version <= ?"),
      keyInsert: q(
        "INSERT INTO api_keys (id, tenant, scopes, hash, prefix, created_at, expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
      ),
      keysAll: q("SELECT * FROM api_keys ORDER BY created_at DESC, id"),
      keysTenant: q("SELECT * FROM api_keys WHERE tenant = ? ORDER BY created_at DESC, id"),
      keyRevoke: q("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"),
      // The latest value of a key is the newest row of its history (migration 0007): the last
      // entry of the (feature, entity) range of the clustered key, found by one seek backwards.
      // Two rows are read to see a tie on the event time (two different values written for the
      // same time: the greater seq wins, and the key orders them by value hash instead), rare
      // enough to be settled by a second statement that answers by itself, in its own snapshot
      // (the key's rows by event time then seq, a sort of the tied rows). The parameters go
      // through CAST: with them bound straight to the key columns these statements cost 13-17 us
      // a call in Bun's SQLite, 3.6-4.4 us with both cast (measured, 1,000,000 rows; why is not
      // established: Bun's SQLite 3.54.1 is built without STAT4); a point lookup in the former
      // table took 2.4-2.6 us.
      latest: q(
        `SELECT event_time, seq, value FROM feature_values
         WHERE feature_id = CAST(?1 AS INTEGER) AND entity_id = CAST(?2 AS TEXT)
         ORDER BY event_time DESC LIMIT 2`,
      ),
      latestTied: q(
        `SELECT event_time, seq, value FROM feature_values
         WHERE feature_id = CAST(?1 AS INTEGER) AND entity_id = CAST(?2 AS TEXT)
         ORDER BY event_time DESC, seq DESC LIMIT 1`,
      ),
      // Set-based: the keys travel as one JSON array [[feature_id, entity_id, at], ...]; per key
      // a probe of the clustered key (feature, entity, event time; migration 0006) finds the
      // newest row at or before `at` (the rare rows sharing its event time ordered by seq, the
      // search stopping there), fetched by its full key. One statement per call instead of one
      // per key (the per-call overhead dominated).
      asOfMany: q(
        `WITH k AS (SELECT key AS i, value ->> 0 AS f, value ->> 1 AS e, value ->> 2 AS at FROM json_each(?))
         SELECT k.i, v.event_time, v.seq, v.value FROM k
         JOIN feature_values v ON (v.feature_id, v.entity_id, v.event_time, v.value_hash) = (
           SELECT feature_id, entity_id, event_time, value_hash FROM feature_values
           WHERE feature_id = k.f AND entity_id = k.e AND event_time <= k.at
           ORDER BY event_time DESC, seq DESC LIMIT 1)`,
      ),
      // Entity by entity (then feature by feature), one range scan of the clustered key
      // (migration 0006) per pair: the pair's values are stored together, in key order.
      history: q(
        `SELECT v.feature_id, v.entity_id, v.event_time, v.seq, v.value
         FROM json_each(?2) e CROSS JOIN json_each(?1) f CROSS JOIN feature_values v
         WHERE v.feature_id = f.value AND v.entity_id = e.value AND v.event_time <= ?3
         ORDER BY e.key, f.key, v.event_time, v.seq LIMIT ?4`,
      ),
    };
  }

  /** The prepared statements (once the schema is migrated). */
  private get statements() {
    if (!this.prepared) throw new Error("database schema is not migrated (run `feature-store migrate`)");
    return this.prepared;
  }

  private appliedMigrations(): AppliedMigration[] {
    this.db.exec(
      "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, checksum TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    );
    return this.db.query("SELECT name, checksum FROM schema_migrations ORDER BY name").all() as AppliedMigration[];
  }

  async migrate(): Promise<string[]> {
    const applied: string[] = [];
    this.db.transaction(() => {
      for (const m of pendingMigrations(sqliteMigrations, this.appliedMigrations())) {
        this.db.exec(m.sql);
        this.db
          .query("INSERT INTO schema_migrations (name, checksum, applied_at) VALUES (?, ?, ?)")
          .run(m.name, migrationChecksum(m), Date.now());
        applied.push(m.name);
      }
    }).immediate();
    // a migration may have rebuilt the history table, dropping the writer's TEMP trigger with it
    if (applied.length > 0) this.valueWriter = undefined;
    this.afterMigrated();
    return applied;
  }

  async assertMigrated(): Promise<void> {
    const pending = pendingMigrations(sqliteMigrations, this.appliedMigrations());
    if (pending.length > 0)
      throw new Error(`database ${this.path} is behind by ${pending.length} migration(s); run \`feature-store migrate\``);
    this.afterMigrated();
  }

  private afterMigrated(): void {
    this.prepared ??= this.prepare();
    for (const r of this.statements.counters.all() as { kind: ChangeKind; version: number }[]) this.known[r.kind] = r.version;
    this.dataVersion = this.readDataVersion();
  }

  /** Sets this connection's page cache size in MiB (a bulk load, `materialize`, wants a larger one). */
  setCacheSize(mib: number): void {
    this.db.exec(`PRAGMA cache_size = -${Math.floor(mib * 1024)}`);
  }

  /**
   * Sets the WAL size, in pages, past which this connection's commits checkpoint (SQLite's
   * default: 1,000). A bulk load checkpoints less often with a larger one: a page its chunks
   * change again and again is copied into the database once per checkpoint, not once per chunk.
   */
  setWalAutocheckpoint(pages: number): void {
    this.db.exec(`PRAGMA wal_autocheckpoint = ${Math.floor(pages)}`);
  }

  /**
   * `PRAGMA wal_checkpoint(mode)` on this connection: copies the WAL's committed frames into the
   * database file (PASSIVE: as far as no reader's snapshot needs them, never waiting for a lock;
   * TRUNCATE: waits for writers and readers within the busy timeout, then empties the WAL file).
   * Answers SQLite's own counts: `busy` 1 when it could not finish (another checkpoint ran, or a
   * lock was held), `log` the frames in the WAL, `checkpointed` those copied (-1 both when the
   * database is not in WAL mode). The counts come from SQLite, never from the `-shm` file: a
   * descriptor of that file, once closed, drops SQLite's POSIX locks on it (see
   * test/unit/sqlite-shm-lock.test.ts and {@link shmMoved}, which keeps its one open for good).
   * A busy database is {@link StoreUnavailable}.
   */
  checkpointWal(mode: "PASSIVE" | "TRUNCATE"): Promise<{ busy: number; log: number; checkpointed: number }> {
    return this.guard(() => this.db.query(`PRAGMA wal_checkpoint(${mode})`).get() as { busy: number; log: number; checkpointed: number });
  }

  async ping(): Promise<void> {
    return this.guard(() => {
      this.db.query("SELECT 1").get();
    });
  }

  async loadDefinitions(tenant?: string): Promise<DefinitionRow[]> {
    return this.guard(() => {
      return ((tenant === undefined ? this.statements.defsAll.all() : this.statements.defsTenant.all(tenant)) as DefinitionRecord[]).map(toDefinition);
    });
  }

  async registerDefinitions<T>(
    tenant: string,
    decide: (current: DefinitionRow[]) => { plan: RegisterPlan; apply: boolean; result: T },
  ): Promise<{ result: T; inserted: DefinitionRow[] }> {
    return this.guard(() => {
      const s = this.statements;
      return this.db
        .transaction(() => {
          const current = (s.defsTenant.all(tenant) as DefinitionRecord[]).map(toDefinition);
          const { plan, apply, result } = decide(current);
          if (!apply || (plan.inserts.length === 0 && plan.updates.length === 0)) return { result, inserted: [] as DefinitionRow[] };
          const inserted = this.applyDefinitionPlan(plan);
          this.bump("definitions", tenant);
          return { result, inserted };
        })
        .immediate();
    });
  }

  /** Inserts and updates definitions inside the caller's transaction; returns the inserted rows. */
  private applyDefinitionPlan(plan: RegisterPlan): DefinitionRow[] {
    const s = this.statements;
    const inserted: DefinitionRow[] = [];
    for (const d of plan.inserts) {
      const row = s.defInsert.get(
        d.tenant, d.name, d.version, d.dtype, d.entity_type, d.ttl_hours,
        d.description, d.owner, JSON.stringify(d.tags), d.created_at, d.updated_at,
      ) as DefinitionRecord;
      inserted.push(toDefinition(row));
    }
    for (const u of plan.updates) s.defUpdate.run(u.description, u.owner, JSON.stringify(u.tags), u.updated_at, u.id);
    return inserted;
  }

  private groupStmts: SqliteGroups | undefined;
  private get groups(): SqliteGroups {
    void this.statements; // throws the "not migrated" error first
    this.groupStmts ??= new SqliteGroups(this.db);
    return this.groupStmts;
  }

  async loadGroups(tenant?: string): Promise<GroupRow[]> {
    return this.guard(() => this.groups.load(tenant));
  }

  async registerCatalog<T>(
    tenant: string,
    decide: (defs: DefinitionRow[], groups: GroupRow[]) => { plan: CatalogPlan; apply: boolean; result: T },
  ): Promise<{ result: T; inserted: DefinitionRow[]; insertedGroups: GroupRow[] }> {
    return this.guard(() => {
      const s = this.statements;
      const groups = this.groups;
      return this.db
        .transaction(() => {
          const current = (s.defsTenant.all(tenant) as DefinitionRecord[]).map(toDefinition);
          const { plan, apply, result } = decide(current, groups.load(tenant));
          const empty = plan.inserts.length + plan.updates.length + plan.groupInserts.length + plan.groupUpdates.length === 0;
          if (!apply || empty) return { result, inserted: [] as DefinitionRow[], insertedGroups: [] as GroupRow[] };
          const inserted = this.applyDefinitionPlan(plan);
          const insertedGroups = groups.apply(plan.groupInserts, plan.groupUpdates);
          this.bump("definitions", tenant);
          return { result, inserted, insertedGroups };
        })
        .immediate();
    });
  }

  async createKey(key: KeyRow): Promise<void> {
    return this.guard(() => {
      this.db
        .transaction(() => {
          this.statements.keyInsert.run(
            key.id, key.tenant, key.scopes.join(","), key.hash, key.prefix, key.created_at, key.expires_at, key.revoked_at,
          );
          this.bump("keys");
        })
        .immediate();
    });
  }

  async listKeys(tenant?: string): Promise<KeyRow[]> {
    return this.guard(() => {
      const rows = (tenant === undefined ? this.statements.keysAll.all() : this.statements.keysTenant.all(tenant)) as KeyRecord[];
      return rows.map(toKey);
    });
  }

  async revokeKey(id: string, at: number): Promise<boolean> {
    return this.guard(() => {
      return this.db
        .transaction(() => {
          const changed = this.statements.keyRevoke.run(at, id).changes > 0;
          if (changed) this.bump("keys");
          return changed;
        })
        .immediate();
    });
  }

  async writeValues(rows: ValueWrite[]): Promise<RowOutcome[]> {
    if (rows.length === 0) return [];
    const c = columnsOf(rows);
    const { seqs, stored } = await this.writeColumns(c, keyOrder(c));
    const out = new Array<RowOutcome>(rows.length);
    for (let i = 0; i < rows.length; i++) out[i] = { seq: seqs[i] as number, status: stored[i] === 1 ? "stored" : "identical" };
    return out;
  }

  /**
   * {@link writeValues} of rows given as columns and their key order (value-writer.ts), answered
   * as columns: the form `materialize`'s store thread receives them in and sends back.
   */
  async writeColumns(c: ValueColumns, order: ArrayLike<number>): Promise<WrittenColumns> {
    return this.guard(() => {
      if (c.n === 0) return { seqs: new Float64Array(0), stored: new Uint8Array(0), count: 0 };
      void this.statements; // throws the "not migrated" error first
      this.valueWriter ??= new SqliteValueWriter(this.db);
      const writer = this.valueWriter;
      return this.db
        .transaction(() => {
          const written = writer.write(c, order);
          if (written.count > 0) this.recordValueChanges(this.bump("values"), c, written.stored);
          return written;
        })
        .immediate();
    });
  }

  async getLatest(keys: ValueKey[]): Promise<(StoredRow | null)[]> {
    return this.guard(() => {
      const { latest, latestTied } = this.statements;
      return keys.map((k) => {
        const rows = latest.values(k.feature_id, k.entity_id) as [number, number, Uint8Array][];
        const first = rows[0];
        if (first === undefined) return null;
        const second = rows[1];
        if (second !== undefined && second[0] === first[0]) return latestTied.get(k.feature_id, k.entity_id) as StoredRow;
        return { event_time: first[0], seq: first[1], value: first[2] };
      });
    });
  }

  async getAsOf(keys: AsOfKey[]): Promise<(StoredRow | null)[]> {
    return this.guard(() => {
      const out = new Array<StoredRow | null>(keys.length).fill(null);
      if (keys.length === 0) return out;
      const json = JSON.stringify(keys.map((k) => [k.feature_id, k.entity_id, k.at]));
      for (const [i, event_time, seq, value] of this.statements.asOfMany.values(json) as [number, number, number, Uint8Array][]) {
        out[i] = { event_time, seq, value };
      }
      return out;
    });
  }

  async getHistory(featureIds: readonly number[], entityIds: readonly string[], upTo: number, limit: number): Promise<HistoryRow[]> {
    return this.guard(() => {
      if (featureIds.length === 0 || entityIds.length === 0 || limit <= 0) return [];
      return this.statements.history.values(JSON.stringify(featureIds), JSON.stringify(entityIds), upTo, limit) as HistoryRow[];
    });
  }

  /**
   * Runs one call, turning a busy, locked, full or unreadable database file into a
   * {@link StoreUnavailable}; any other error (a bug, a broken invariant) passes unchanged.
   */
  private guard<T>(fn: () => T): Promise<T> {
    try {
      return Promise.resolve(fn());
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (typeof code === "string" && UNAVAILABLE_CODES.test(code)) {
        return Promise.reject(new StoreUnavailable(this.name, `SQLite ${this.path}: ${(err as Error).message}`, { cause: err }));
      }
      return Promise.reject(err);
    }
  }

  /** The source store with a busy, locked, full or unreadable file reported as {@link StoreUnavailable} (a 503), like every call here. */
  private guardSources(s: SqliteSourceStore): SourceStore {
    const g =
      <A extends unknown[], R>(f: (...a: A) => Promise<R>) =>
      (...a: A): Promise<R> =>
        f.apply(s, a).catch((err: unknown) => this.guard<R>(() => { throw err; }));
    return {
      putSources: g(s.putSources), listSources: g(s.listSources), getSourceState: g(s.getSourceState), putSourceState: g(s.putSourceState),
      createJob: g(s.createJob), updateJob: g(s.updateJob), getJob: g(s.getJob), listJobs: g(s.listJobs), interruptStaleJobs: g(s.interruptStaleJobs),
    };
  }

  get ownChangeLedger(): SharedArrayBuffer {
    return this.ledger.buffer;
  }

  takeOwnChanges(kind: OwnChangeKind): number[] {
    const taken = this.receipts[kind] ?? [];
    this.receipts[kind] = [];
    return taken;
  }

  adoptOwnChanges(kind: OwnChangeKind, versions: readonly number[]): void {
    for (const v of versions) if (v > this.known[kind]) this.adopted[kind].add(v);
  }

  /**
   * The counter versions in (known, upTo] that are not this process's own (adopted or in the
   * ledger), at most `limit` of them (more exist when the answer is that long); forgets the
   * adopted ones up to `upTo`. Keys versions are never tracked as own: one stands for all.
   */
  private foreignVersions(kind: ChangeKind, upTo: number, limit = 1): number[] {
    const from = this.known[kind];
    if (upTo <= from) return [];
    if (kind === "keys") return [upTo];
    const adopted = this.adopted[kind];
    const recorded = this.ledger.since(kind, from);
    const foreign: number[] = [];
    for (let v = from + 1; foreign.length < limit && v <= upTo; v++) if (!adopted.has(v) && !recorded.has(v)) foreign.push(v);
    for (const v of adopted) if (v <= upTo) adopted.delete(v);
    return foreign;
  }

  /**
   * What another process's commits up to counter version `upTo` changed of `kind`: undefined
   * when nothing (every version was this process's own), else a {@link ChangeSet} naming the
   * tenants (definitions) or the entities (values) when the records allow; moves `known` on.
   */
  private foreignChange(kind: ChangeKind, upTo: number): ChangeSet | undefined {
    const from = this.known[kind];
    const foreign = this.foreignVersions(kind, upTo, kind === "values" ? VALUE_CHANGES_KEPT + 1 : 1);
    this.known[kind] = Math.max(from, upTo);
    if (foreign.length === 0) return undefined;
    const c: ChangeSet = { definitions: kind === "definitions", keys: kind === "keys", values: kind === "values" };
    // the records unreadable now (busy): any tenant, any entity may have changed (`known` has moved on)
    try {
      if (kind === "definitions") {
        const tenants = this.changedTenants(from, upTo);
        if (tenants) c.tenants = tenants;
      } else if (kind === "values") {
        const entities = this.changedEntities(foreign);
        if (entities) c.entities = entities;
      }
    } catch {
      delete c.tenants;
      delete c.entities;
    }
    return c;
  }

  /**
   * Bumps a change counter inside the caller's transaction (a definitions bump records its
   * tenant; a values bump's caller records its entities, {@link recordValueChanges}); notices
   * interleaved foreign bumps. Answers the new version.
   */
  private bump(kind: ChangeKind, tenant?: string): number {
    const { version } = this.statements.bump.get(kind) as { version: number };
    const foreign = this.foreignChange(kind, version - 1);
    this.known[kind] = version;
    if (kind !== "keys") {
      this.receipts[kind]?.push(version);
      this.ledger.record(kind, version);
    }
    if (kind === "definitions" && tenant !== undefined) {
      this.statements.tenantChanged.run(version, tenant);
      this.statements.tenantChangesPrune.run(version - TENANT_CHANGES_KEPT);
    }
    if (foreign) queueMicrotask(() => this.notify(foreign));
    return version;
  }

  /** feature version id -> its tenant and entity type (neither ever changes), as far as looked up. */
  private readonly featureScopes = new Map<number, { tenant: string; entity_type: string } | null>();

  /**
   * Records, inside the writing transaction (right after its values bump), the entities whose
   * values the write stored, under the bump's `version`, so other processes forget only those
   * from their in-process cache; "everything" past VALUE_CHANGES_MAX_ENTITIES entities (or for a
   * feature id without a definition). Prunes records older than VALUE_CHANGES_KEPT versions.
   */
  private recordValueChanges(version: number, c: ValueColumns, stored: Uint8Array): void {
    const s = this.statements;
    const seen = new Set<string>();
    let named: [string, string, string][] = [];
    for (let i = 0; i < c.n; i++) {
      if (stored[i] !== 1) continue;
      const featureId = c.featureIds[i] as number;
      const entityId = c.entityIds[i] as string;
      let scope = this.featureScopes.get(featureId);
      if (scope === undefined) {
        scope = (s.featureScope.get(featureId) as { tenant: string; entity_type: string } | null) ?? null;
        if (scope) this.featureScopes.set(featureId, scope);
      }
      if (scope === null) {
        named = [];
        break;
      }
      const key = `${scope.tenant}\u0000${scope.entity_type}\u0000${entityId}`;
      if (seen.has(key)) continue;
      if (seen.size === VALUE_CHANGES_MAX_ENTITIES) {
        named = [];
        break;
      }
      seen.add(key);
      named.push([scope.tenant, scope.entity_type, entityId]);
    }
    s.valueChanged.run(version, JSON.stringify(named));
    s.valueChangesPrune.run(version - VALUE_CHANGES_KEPT);
  }

  /**
   * The entities changed by the values counter versions `versions` (ascending), when every one
   * of them recorded its entities (none recorded "everything") and they are not too many;
   * undefined otherwise (pruned, a binary from before the record, a bulk write), which means any
   * entity may have changed.
   */
  private changedEntities(versions: readonly number[]): EntityRef[] | undefined {
    if (versions.length === 0 || versions.length > VALUE_CHANGES_KEPT) return undefined;
    const wanted = new Set(versions);
    const found = new Set<number>();
    const out: EntityRef[] = [];
    const rows = this.statements.valueChanges.values(versions[0] as number, versions.at(-1) as number) as [number, string | null, string | null, string | null][];
    for (const [version, tenant, entity_type, entity_id] of rows) {
      if (!wanted.has(version)) continue;
      if (tenant === null || entity_type === null || entity_id === null) return undefined;
      found.add(version);
      out.push({ tenant, entity_type, entity_id });
      if (out.length > VALUE_CHANGES_MAX_NOTICE) return undefined;
    }
    return found.size === wanted.size ? out : undefined;
  }

  /**
   * The tenants whose definitions changed in counter versions (from, to], when every one of
   * those versions recorded its tenant; undefined otherwise (pruned, or bumped by a binary from
   * before the record), which means any tenant may have changed.
   */
  private changedTenants(from: number, to: number): string[] | undefined {
    const rows = this.statements.tenantChanges.all(from, to) as { tenant: string }[];
    if (rows.length !== to - from) return undefined;
    return [...new Set(rows.map((r) => r.tenant))];
  }

  /** `PRAGMA data_version`, prepared once and read as a bare row (it runs before every online lookup). */
  private dataVersionStatement: Statement | undefined;
  private readDataVersion(): number {
    this.dataVersionStatement ??= this.db.prepare("PRAGMA data_version");
    return (this.dataVersionStatement.values()[0] as [number])[0];
  }

  private notify(c: ChangeSet): void {
    for (const l of this.listeners) l(c);
  }

  /**
   * The `-shm` gate of {@link poll}: a descriptor of SQLite's shared WAL index, the last header
   * read through it, and the header of the last completed poll. `null`: the file could not be
   * opened (every poll then runs the pragma).
   */
  private shmFd: number | null | undefined;
  private readonly shmHeader = new Uint8Array(48);
  private readonly shmLast = new Uint8Array(48);
  private shmSeen = false;

  /**
   * Whether SQLite's WAL-index header may have changed since the last completed poll (true when
   * it cannot be read). The header is the first 48 bytes of the `-shm`: every commit and every
   * restart of the WAL rewrites it with a new change counter, frame count and checksums, and
   * this copy is written last (the second copy, at 48, first), so a reader that sees it
   * unchanged has missed no commit that had returned before the read; a torn read during a
   * commit can only look like a change. Read with `pread` (`readSync` at offset 0) through a
   * descriptor this instance opens once its connection is up and **never closes**: closing any
   * descriptor of a file drops every POSIX lock the process holds on it, SQLite's own and its
   * sibling connections' (the session-8 bug of {@link pollNow}). While this connection is open
   * SQLite cannot delete the `-shm` (it does when the last connection closes), so the descriptor
   * stays on the live file. Measured (session 9): the check before each online lookup fell from
   * 2.2-2.5 us (`PRAGMA data_version`: two `fcntl` locks and an `fstat`) to 0.7-0.8 us.
   */
  private shmMoved(): boolean {
    if (this.shmFd === null) return true;
    if (this.shmFd === undefined) {
      try {
        this.shmFd = openSync(`${this.path}-shm`, "r");
      } catch {
        this.shmFd = null;
        return true;
      }
    }
    let n: number;
    try {
      n = readSync(this.shmFd, this.shmHeader, 0, 48, 0);
    } catch {
      return true;
    }
    if (n !== 48) return true;
    if (!this.shmSeen) return true;
    const a = this.shmHeader;
    const b = this.shmLast;
    for (let i = 0; i < 48; i++) if (a[i] !== b[i]) return true;
    return false;
  }

  /** The header {@link shmMoved} read is taken as seen: the poll that followed it completed. */
  private shmTaken(): void {
    this.shmLast.set(this.shmHeader);
    this.shmSeen = typeof this.shmFd === "number";
  }

  /** Looks for other processes' commits; exposed for tests. */
  poll(): void {
    if (!this.prepared) return;
    if (!this.shmMoved()) return;
    const dv = this.readDataVersion();
    if (dv === this.dataVersion) return this.shmTaken();
    // read the counters before taking the new data version: if the read fails (busy), the next
    // poll looks again instead of missing the change
    const counters = this.statements.counters.all() as { kind: ChangeKind; version: number }[];
    this.dataVersion = dv;
    const changes: ChangeSet = { definitions: false, keys: false, values: false };
    for (const r of counters) {
      if (r.version === this.known[r.kind]) continue;
      const c = this.foreignChange(r.kind, r.version);
      this.known[r.kind] = r.version;
      if (c === undefined) continue;
      changes[r.kind] = true;
      if (c.tenants) changes.tenants = c.tenants;
      if (c.entities) changes.entities = c.entities;
    }
    if (changes.definitions || changes.keys || changes.values) this.notify(changes);
    this.shmTaken();
  }

  /**
   * {@link poll} now (a read of the `-shm` header; `PRAGMA data_version` only when the header
   * moved, then the counters only when the version did); a busy file is left to the next poll.
   * Runs before each online lookup.
   *
   * Not from SQLite's shared WAL-index header (the `-shm`, mapped with `Bun.mmap`), as it was for
   * a while: mapping it opens and closes the file, and closing any descriptor of a file drops
   * every POSIX lock the process holds on it, SQLite's own (https://sqlite.org/howtocorrupt.html,
   * 2.2). After a server's first online lookup, the next process to open the database (a CLI
   * command, a materialize job) found the `-shm` unowned, reset it under the server (truncated
   * and rebuilt) and, closing, checkpointed and truncated the WAL as if it were its last user.
   */
  pollNow(): void {
    if (!this.prepared) return;
    try {
      this.poll();
    } catch {
      // a busy or briefly unavailable file: the next call looks again, as does the timer
    }
  }

  watch(listener: (changes: ChangeSet) => void): void {
    this.listeners.push(listener);
    if (!this.timer) {
      this.timer = setInterval(() => {
        try {
          this.poll();
        } catch {
          // a busy or briefly unavailable file: try again on the next tick
        }
      }, this.pollIntervalMs);
      this.timer.unref?.();
    }
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.db.close();
  }
}
