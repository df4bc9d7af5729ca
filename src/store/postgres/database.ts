/**
 * The production database: PostgreSQL through postgres.js, playing the registry and offline
 * roles. Behaves exactly like the embedded SQLite backend (src/store/sqlite/database.ts); the
 * differences are how: set-based SQL over whole batches (./values.ts), value history
 * range-partitioned by event time (./partitions.ts), and LISTEN/NOTIFY plus a one-second poll
 * of `change_counters` for other processes' changes (./change-feed.ts). This file puts the
 * parts together: migrations (./migrate.ts), registry (./registry.ts), values, change feed.
 */
import { randomBytes } from "node:crypto";
import { postgresMigrations } from "../../../migrations/index.ts";
import type { Logger } from "../../log.ts";
import { pendingMigrations } from "../migrations.ts";
import type { AsOfKey, CatalogPlan, ChangeSet, Database, DefinitionRow, GroupRow, HistoryRow, KeyRow, RegisterPlan, RegistryCapabilities, RowOutcome, StoredRow, ValueKey, ValueWrite } from "../types.ts";
import { PostgresChangeFeed } from "./change-feed.ts";
import { createClient, STORE_NAME, timed, type Sql } from "./client.ts";
import { appliedMigrations, applyMigrations } from "./migrate.ts";
import { PartitionManager } from "./partitions.ts";
import { PostgresRegistry } from "./registry.ts";
import { PostgresSourceStore } from "./sources.ts";
import { PostgresValues } from "./values.ts";

export { CHANGES_CHANNEL } from "./change-feed.ts";

const MAINTENANCE_INTERVAL_MS = 3_600_000;

/** Options of {@link PostgresDatabase}. */
export interface PostgresOptions {
  /** `postgres://user:pass@host:5432/db` (`?sslmode=require|verify-full`, `sslrootcert=...`) */
  url: string;
  log: Logger;
  /** drop history partitions entirely older than this many days; 0: keep forever */
  retentionDays: number;
  /** per-call timeout, ms (also the server's statement_timeout) */
  timeoutMs: number;
  /** timeout of a bulk read (the point-in-time lookups of batch and training data), ms, in place of `timeoutMs` (default: `timeoutMs`) */
  bulkTimeoutMs?: number;
  /** pool size (default 10) */
  poolSize?: number;
  /** identity of this connection's change notifications: a sibling (a bulk-lane worker) passes its process's `changeOrigin` */
  origin?: string | undefined;
}

/** {@link Database} on PostgreSQL. */
export class PostgresDatabase implements Database {
  readonly name = STORE_NAME;
  readonly capabilities: RegistryCapabilities = { embedded: false };
  private readonly sql: Sql;
  private readonly log: Logger;
  private readonly timeoutMs: number;
  private readonly partitions: PartitionManager;
  private readonly feed: PostgresChangeFeed;
  private readonly registry: PostgresRegistry;
  private readonly values: PostgresValues;
  private maintenanceTimer: ReturnType<typeof setInterval> | undefined;
  private maintenance: Promise<void> | undefined;
  readonly sources: PostgresSourceStore;

  constructor(opts: PostgresOptions) {
    this.log = opts.log;
    this.timeoutMs = opts.timeoutMs;
    this.sql = createClient({ url: opts.url, log: opts.log, timeoutMs: opts.timeoutMs, max: opts.poolSize ?? 10 });
    this.partitions = new PartitionManager(this.sql, opts.log, {
      retentionDays: opts.retentionDays,
      lockTimeoutMs: Math.min(opts.timeoutMs, 5_000),
    });
    this.feed = new PostgresChangeFeed({ url: opts.url, sql: this.sql, log: opts.log, timeoutMs: opts.timeoutMs, instance: opts.origin ?? randomBytes(6).toString("hex") });
    this.registry = new PostgresRegistry(this.sql, this.feed, opts.timeoutMs);
    this.values = new PostgresValues(this.sql, opts.log, this.partitions, this.feed, opts.timeoutMs, opts.bulkTimeoutMs ?? opts.timeoutMs);
    this.sources = new PostgresSourceStore(this.sql);
  }

  get changeOrigin(): string {
    return this.feed.instance;
  }

  // ───────────────────────────── migrations and maintenance ─────────────────────────────

  async migrate(): Promise<string[]> {
    const applied = await applyMigrations(this.sql, this.log);
    await this.afterMigrated();
    return applied;
  }

  async assertMigrated(): Promise<void> {
    const applied = await timed("migration check", appliedMigrations(this.sql), this.timeoutMs);
    const pending = pendingMigrations(postgresMigrations, applied);
    if (pending.length > 0) throw new Error(`database is behind by ${pending.length} migration(s); run \`feature-store migrate\``);
    await this.afterMigrated();
  }

  private async afterMigrated(): Promise<void> {
    await this.feed.readCounters();
    if (!this.maintenanceTimer) {
      this.maintenanceTimer = setInterval(() => void this.runMaintenance(), MAINTENANCE_INTERVAL_MS);
      this.maintenanceTimer.unref?.();
    }
    await this.runMaintenance();
  }

  private runMaintenance(): Promise<void> {
    this.maintenance ??= this.partitions.maintain(Date.now()).finally(() => (this.maintenance = undefined));
    return this.maintenance;
  }

  /**
   * Retention: drops the history partitions entirely older than `retentionDays` before `now`
   * (and deletes such rows from the DEFAULT partition). Returns the partitions dropped.
   */
  dropExpiredPartitions(now: number): Promise<string[]> {
    return this.partitions.dropExpired(now);
  }

  async ping(): Promise<void> {
    await timed("ping", this.sql`SELECT 1`, Math.min(this.timeoutMs, 2_000));
  }

  // ───────────────────────────── registry (./registry.ts) ─────────────────────────────

  loadDefinitions(tenant?: string): Promise<DefinitionRow[]> {
    return this.registry.loadDefinitions(tenant);
  }

  registerDefinitions<T>(
    tenant: string,
    decide: (current: DefinitionRow[]) => { plan: RegisterPlan; apply: boolean; result: T },
  ): Promise<{ result: T; inserted: DefinitionRow[] }> {
    return this.registry.registerDefinitions(tenant, decide);
  }
  loadGroups(tenant?: string): Promise<GroupRow[]> {
    return this.registry.loadGroups(tenant);
  }

  registerCatalog<T>(
    tenant: string,
    decide: (defs: DefinitionRow[], groups: GroupRow[]) => { plan: CatalogPlan; apply: boolean; result: T },
  ): Promise<{ result: T; inserted: DefinitionRow[]; insertedGroups: GroupRow[] }> {
    return this.registry.registerCatalog(tenant, decide);
  }


  createKey(key: KeyRow): Promise<void> {
    return this.registry.createKey(key);
  }

  listKeys(tenant?: string): Promise<KeyRow[]> {
    return this.registry.listKeys(tenant);
  }

  revokeKey(id: string, at: number): Promise<boolean> {
    return this.registry.revokeKey(id, at);
  }

  // ───────────────────────────── values (./values.ts) ─────────────────────────────

  writeValues(rows: ValueWrite[]): Promise<RowOutcome[]> {
    return this.values.writeValues(rows);
  }

  getLatest(keys: ValueKey[]): Promise<(StoredRow | null)[]> {
    return this.values.getLatest(keys);
  }

  getAsOf(keys: AsOfKey[]): Promise<(StoredRow | null)[]> {
    return this.values.getAsOf(keys);
  }

  getHistory(featureIds: readonly number[], entityIds: readonly string[], upTo: number, limit: number): Promise<HistoryRow[]> {
    return this.values.getHistory(featureIds, entityIds, upTo, limit);
  }

  // ───────────────────────────── change feed (./change-feed.ts) ─────────────────────────────

  watch(listener: (changes: ChangeSet) => void): void {
    this.feed.watch(listener);
  }

  /** One tick of the change feed's fallback poll (exposed for tests). */
  poll(): Promise<void> {
    return this.feed.poll();
  }

  async close(): Promise<void> {
    if (this.maintenanceTimer) clearInterval(this.maintenanceTimer);
    this.maintenanceTimer = undefined;
    // The grace period is short: postgres.js waits it out in full for a connection that
    // broke mid-query (its `query` is never cleared), which happens after every outage.
    await Promise.all([this.feed.close(), this.sql.end({ timeout: 2 })]);
  }
}
