/**
 * The production database: PostgreSQL through postgres.js. Behaves exactly like the embedded
 * SQLite backend (src/store/sqlite/database.ts); the differences are how: set-based SQL over
 * whole batches, value history range-partitioned by event time (./partitions.ts), and
 * LISTEN/NOTIFY plus a one-second poll of `change_counters` for other processes' changes.
 */
import { randomBytes } from "node:crypto";
import { postgresMigrations } from "../../../migrations/index.ts";
import type { Logger } from "../../log.ts";
import type { DtypeName } from "../../registry/dtype.ts";
import { TimeoutError } from "../../lib/timeout.ts";
import { migrationChecksum, pendingMigrations, type AppliedMigration } from "../migrations.ts";
import type {
  AsOfKey,
  ChangeSet,
  Database,
  DefinitionRow,
  KeyRow,
  RegisterPlan,
  StoredRow,
  ValueKey,
  ValueWrite,
  WrittenRow,
} from "../types.ts";
import { PostgresSourceStore } from "./sources.ts";
import { byteaArray, createClient, numberArray, textArray, type Querier, type Sql } from "./client.ts";
import { PartitionManager } from "./partitions.ts";

/** The NOTIFY channel; payload `kind:instance[:counter version]`. */
export const CHANGES_CHANNEL = "feature_store_changes";

type CountedKind = "definitions" | "keys";
type ChangeKind = CountedKind | "values";

/** pg_advisory_xact_lock(LOCK_NAMESPACE, n): 1 migrations (2 is partition DDL, see partitions.ts). */
const LOCK_NAMESPACE = 0x6673;
const LOCK_MIGRATIONS = 1;
/** pg_advisory_xact_lock(LOCK_TENANT_NAMESPACE, hashtext(tenant)) serialises a tenant's registrations. */
const LOCK_TENANT_NAMESPACE = 0x6674;

/** Rows per write statement, and value bytes per statement (a protocol message is < 1 GiB). */
const WRITE_CHUNK_ROWS = 5_000;
const WRITE_CHUNK_BYTES = 64 << 20;
/** Keys per read statement. */
const READ_CHUNK_KEYS = 20_000;

const POLL_INTERVAL_MS = 1_000;
const MAINTENANCE_INTERVAL_MS = 3_600_000;

interface DefinitionRecord {
  id: number;
  tenant: string;
  name: string;
  version: number;
  dtype: string;
  entity_type: string;
  ttl_hours: number | null;
  description: string | null;
  owner: string | null;
  tags: Record<string, string>;
  created_at: number;
  updated_at: number;
}

interface FoundRow {
  ord: number;
  event_time: number;
  seq: number;
  value: Uint8Array;
}

function toDefinition(r: DefinitionRecord): DefinitionRow {
  return {
    id: r.id,
    tenant: r.tenant,
    name: r.name,
    version: r.version,
    dtype: r.dtype as DtypeName,
    entity_type: r.entity_type,
    ttl_hours: r.ttl_hours,
    description: r.description,
    owner: r.owner,
    tags: r.tags,
    created_at: r.created_at,
    updated_at: r.updated_at,
  };
}

const DEFINITION_COLUMNS = "id, tenant, name, version, dtype, entity_type, ttl_hours, description, owner, tags, created_at, updated_at";
/** scopes as JSON: text[] would come back unparsed (see client.ts on fetch_types) */
const KEY_COLUMNS = "id, tenant, to_json(scopes) AS scopes, hash, prefix, created_at, expires_at, revoked_at";

/** Splits `items` into consecutive chunks of at most `size`. */
function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** Options of {@link PostgresDatabase}. */
export interface PostgresOptions {
  /** `postgres://user:pass@host:5432/db` (`?sslmode=require|verify-full`, `sslrootcert=...`) */
  url: string;
  log: Logger;
  /** drop history partitions entirely older than this many days; 0: keep forever */
  retentionDays: number;
  /** per-call timeout, ms (also the server's statement_timeout) */
  timeoutMs: number;
  /** pool size (default 10) */
  poolSize?: number;
}

/** {@link Database} on PostgreSQL. */
export class PostgresDatabase implements Database {
  readonly kind = "postgres" as const;
  private readonly url: string;
  private readonly sql: Sql;
  private readonly log: Logger;
  private readonly timeoutMs: number;
  private readonly partitions: PartitionManager;
  /** tells this instance's own notifications apart from other processes' */
  private readonly instance = randomBytes(6).toString("hex");
  /** last counter versions seen (undefined until first read) */
  private readonly known: Partial<Record<CountedKind, number>> = {};
  private readonly listeners: ((c: ChangeSet) => void)[] = [];
  private listenSql: Sql | undefined;
  private listening = false;
  private listenAttempt: Promise<void> | undefined;
  private listenTried = false;
  private pollTimer: ReturnType<typeof setInterval> | undefined;
  private polling = false;
  private pollFailing = false;
  private maintenanceTimer: ReturnType<typeof setInterval> | undefined;
  private maintenance: Promise<void> | undefined;
  private closed = false;
  readonly sources: PostgresSourceStore;

  constructor(opts: PostgresOptions) {
    this.log = opts.log;
    this.timeoutMs = opts.timeoutMs;
    this.sql = createClient({ url: opts.url, log: opts.log, timeoutMs: opts.timeoutMs, max: opts.poolSize ?? 10 });
    this.partitions = new PartitionManager(this.sql, opts.log, {
      retentionDays: opts.retentionDays,
      lockTimeoutMs: Math.min(opts.timeoutMs, 5_000),
    });
    this.url = opts.url;
    this.sources = new PostgresSourceStore(this.sql);
  }

  /**
   * Races `p` against the call timeout. A query still queued or running when the timer fires
   * is cancelled, so a dead server cannot pile up work.
   */
  private async timed<T>(what: string, p: Promise<T> & { cancel?: () => unknown }, ms = this.timeoutMs): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        if (p.cancel) Promise.resolve(p.cancel()).catch(() => {});
        reject(new TimeoutError(`postgres ${what} timed out after ${ms} ms`));
      }, ms);
      timer.unref?.();
    });
    try {
      return await Promise.race([p, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  // ───────────────────────────── migrations ─────────────────────────────

  async migrate(): Promise<string[]> {
    const applied: string[] = [];
    for (;;) {
      // One transaction per migration, each under the advisory lock, re-reading what is applied:
      // a concurrent `migrate` waits, then finds nothing left to do.
      const name = await this.sql.begin(async (tx) => {
        await tx`SELECT set_config('statement_timeout', '0', true)`;
        await tx`SELECT pg_advisory_xact_lock(${LOCK_NAMESPACE}, ${LOCK_MIGRATIONS})`;
        await tx`CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, checksum text NOT NULL, applied_at bigint NOT NULL)`;
        const done = await tx<AppliedMigration[]>`SELECT name, checksum FROM schema_migrations ORDER BY name`;
        const next = pendingMigrations(postgresMigrations, [...done])[0];
        if (!next) return null;
        await tx.unsafe(next.sql);
        await tx`INSERT INTO schema_migrations (name, checksum, applied_at) VALUES (${next.name}, ${migrationChecksum(next)}, ${Date.now()})`;
        return next.name;
      });
      if (name === null) break;
      this.log.info({ migration: name }, "applied migration");
      applied.push(name);
    }
    await this.afterMigrated();
    return applied;
  }

  async assertMigrated(): Promise<void> {
    const applied = await this.timed("migration check", this.appliedMigrations());
    const pending = pendingMigrations(postgresMigrations, applied);
    if (pending.length > 0) throw new Error(`database is behind by ${pending.length} migration(s); run \`feature-store migrate\``);
    await this.afterMigrated();
  }

  private async appliedMigrations(): Promise<AppliedMigration[]> {
    const [t] = await this.sql<{ exists: boolean }[]>`SELECT to_regclass('schema_migrations') IS NOT NULL AS exists`;
    if (!t?.exists) return [];
    return [...(await this.sql<AppliedMigration[]>`SELECT name, checksum FROM schema_migrations ORDER BY name`)];
  }

  /** Reads the change counters and runs partition maintenance now and every hour. */
  private async afterMigrated(): Promise<void> {
    await this.readCounters();
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
    await this.timed("ping", this.sql`SELECT 1`, Math.min(this.timeoutMs, 2_000));
  }

  // ───────────────────────────── registry and keys ─────────────────────────────

  async loadDefinitions(): Promise<DefinitionRow[]> {
    const rows = await this.timed("load definitions", this.sql<DefinitionRecord[]>`SELECT ${this.sql.unsafe(DEFINITION_COLUMNS)} FROM feature_definitions ORDER BY id`);
    return rows.map(toDefinition);
  }

  async registerDefinitions<T>(
    tenant: string,
    decide: (current: DefinitionRow[]) => { plan: RegisterPlan; apply: boolean; result: T },
  ): Promise<{ result: T; inserted: DefinitionRow[] }> {
    let version: number | undefined;
    const out = await this.timed(
      "register",
      this.sql.begin(async (tx) => {
        await tx`SELECT pg_advisory_xact_lock(${LOCK_TENANT_NAMESPACE}, hashtext(${tenant}))`;
        const current = (
          await tx<DefinitionRecord[]>`SELECT ${tx.unsafe(DEFINITION_COLUMNS)} FROM feature_definitions WHERE tenant = ${tenant} ORDER BY id`
        ).map(toDefinition);
        const { plan, apply, result } = decide(current);
        const inserted: DefinitionRow[] = [];
        if (!apply || (plan.inserts.length === 0 && plan.updates.length === 0)) return { result, inserted };
        if (plan.inserts.length > 0) {
          const d = plan.inserts;
          const rows = await tx<DefinitionRecord[]>`
            INSERT INTO feature_definitions (tenant, name, version, dtype, entity_type, ttl_hours, description, owner, tags, created_at, updated_at)
            SELECT tenant, name, version, dtype, entity_type, ttl_hours, description, owner, tags::jsonb, created_at, updated_at
            FROM unnest(${textArray(d.map((x) => x.tenant))}::text[], ${textArray(d.map((x) => x.name))}::text[],
                        ${numberArray(d.map((x) => x.version))}::int[], ${textArray(d.map((x) => x.dtype))}::text[],
                        ${textArray(d.map((x) => x.entity_type))}::text[], ${numberArray(d.map((x) => x.ttl_hours))}::float8[],
                        ${textArray(d.map((x) => x.description))}::text[], ${textArray(d.map((x) => x.owner))}::text[],
                        ${textArray(d.map((x) => JSON.stringify(x.tags)))}::text[],
                        ${numberArray(d.map((x) => x.created_at))}::bigint[], ${numberArray(d.map((x) => x.updated_at))}::bigint[])
                 WITH ORDINALITY AS t(tenant, name, version, dtype, entity_type, ttl_hours, description, owner, tags, created_at, updated_at, ord)
            ORDER BY ord
            RETURNING ${tx.unsafe(DEFINITION_COLUMNS)}`;
          // identity values follow insertion order, which is plan order
          for (const r of [...rows].sort((a, b) => a.id - b.id)) inserted.push(toDefinition(r));
        }
        if (plan.updates.length > 0) {
          const u = plan.updates;
          await tx`
            UPDATE feature_definitions d
            SET description = u.description, owner = u.owner, tags = u.tags::jsonb, updated_at = u.updated_at
            FROM unnest(${numberArray(u.map((x) => x.id))}::bigint[], ${textArray(u.map((x) => x.description))}::text[],
                        ${textArray(u.map((x) => x.owner))}::text[], ${textArray(u.map((x) => JSON.stringify(x.tags)))}::text[],
                        ${numberArray(u.map((x) => x.updated_at))}::bigint[])
                 AS u(id, description, owner, tags, updated_at)
            WHERE d.id = u.id`;
        }
        version = await this.bump(tx, "definitions");
        return { result, inserted };
      }),
    );
    if (version !== undefined) this.afterBump("definitions", version);
    return out;
  }

  async createKey(key: KeyRow): Promise<void> {
    const version = await this.timed(
      "create key",
      this.sql.begin(async (tx) => {
        await tx`
          INSERT INTO api_keys (id, tenant, scopes, hash, prefix, created_at, expires_at, revoked_at)
          VALUES (${key.id}, ${key.tenant}, ${textArray(key.scopes)}::text[], ${key.hash}, ${key.prefix}, ${key.created_at}, ${key.expires_at}, ${key.revoked_at})`;
        return this.bump(tx, "keys");
      }),
    );
    this.afterBump("keys", version);
  }

  async listKeys(tenant?: string): Promise<KeyRow[]> {
    // COLLATE "C": byte order, as SQLite sorts
    const rows = await this.timed(
      "list keys",
      tenant === undefined
        ? this.sql<KeyRow[]>`SELECT ${this.sql.unsafe(KEY_COLUMNS)} FROM api_keys ORDER BY created_at DESC, id COLLATE "C"`
        : this.sql<KeyRow[]>`SELECT ${this.sql.unsafe(KEY_COLUMNS)} FROM api_keys WHERE tenant = ${tenant} ORDER BY created_at DESC, id COLLATE "C"`,
    );
    return [...rows];
  }

  async revokeKey(id: string, at: number): Promise<boolean> {
    const version = await this.timed(
      "revoke key",
      this.sql.begin(async (tx) => {
        const r = await tx`UPDATE api_keys SET revoked_at = ${at} WHERE id = ${id} AND revoked_at IS NULL`;
        return r.count > 0 ? this.bump(tx, "keys") : undefined;
      }),
    );
    if (version === undefined) return false;
    this.afterBump("keys", version);
    return true;
  }

  /** Bumps a change counter and notifies, inside the caller's transaction. */
  private async bump(tx: Querier, kind: CountedKind): Promise<number> {
    const [r] = await tx<{ version: number }[]>`
      WITH b AS (UPDATE change_counters SET version = version + 1 WHERE kind = ${kind} RETURNING version)
      SELECT version, pg_notify(${CHANGES_CHANNEL}, ${`${kind}:${this.instance}:`} || version) FROM b`;
    if (!r) throw new Error(`change_counters has no ${kind} row`);
    return r.version;
  }

  /** After our own commit: a gap in the counter means another process changed it meanwhile. */
  private afterBump(kind: CountedKind, version: number): void {
    const prev = this.known[kind];
    if (prev !== undefined && version <= prev) return;
    this.known[kind] = version;
    if (prev !== undefined && version !== prev + 1) queueMicrotask(() => this.notify(change(kind)));
  }

  // ───────────────────────────── values ─────────────────────────────

  async writeValues(rows: ValueWrite[]): Promise<WrittenRow[]> {
    if (rows.length === 0) return [];
    try {
      await this.partitions.ensureFor(
        rows.map((r) => r.event_time),
        Date.now(),
      );
    } catch (err) {
      // the DEFAULT partition takes the rows; the next attempt or maintenance retries
      this.log.warn({ err }, "could not create partitions for a write");
    }
    const parts: { start: number; rows: ValueWrite[] }[] = [];
    let start = 0;
    let bytes = 0;
    for (let i = 0; i < rows.length; i++) {
      const size = (rows[i] as ValueWrite).value.byteLength;
      if (i > start && (i - start >= WRITE_CHUNK_ROWS || bytes + size > WRITE_CHUNK_BYTES)) {
        parts.push({ start, rows: rows.slice(start, i) });
        start = i;
        bytes = 0;
      }
      bytes += size;
    }
    parts.push({ start, rows: rows.slice(start) });

    const found: { index: number; seq: number }[] =
      parts.length === 1
        ? await this.timed("write values", this.writeChunk(this.sql, (parts[0] as (typeof parts)[number]).rows, 0))
        : await this.timed(
            "write values",
            this.sql.begin(async (tx) => {
              const all: { index: number; seq: number }[] = [];
              for (const p of parts) all.push(...(await this.writeChunk(tx, p.rows, p.start)));
              return all;
            }),
          );
    return found.map(({ index, seq }) => {
      const r = rows[index] as ValueWrite;
      return { feature_id: r.feature_id, entity_id: r.entity_id, event_time: r.event_time, seq, value: r.value };
    });
  }

  /**
   * One statement (atomic on its own): dedupes the batch, numbers the rows in input order,
   * inserts history (re-sends skipped by the identity index), upserts the greatest new value
   * per key into online_values when it beats the stored one, and notifies once.
   * Rows are inserted and locked in key order so concurrent batches cannot deadlock.
   */
  private async writeChunk(sql: Querier, rows: ValueWrite[], offset: number): Promise<{ index: number; seq: number }[]> {
    const result = await sql<{ ord: number; seq: number }[]>`
      WITH input AS (
        SELECT * FROM unnest(${numberArray(rows.map((r) => r.feature_id))}::bigint[], ${textArray(rows.map((r) => r.entity_id))}::text[],
                             ${numberArray(rows.map((r) => r.event_time))}::bigint[], ${byteaArray(rows.map((r) => r.value_hash))}::bytea[],
                             ${byteaArray(rows.map((r) => r.value))}::bytea[])
               WITH ORDINALITY AS t(feature_id, entity_id, event_time, value_hash, value, ord)
      ),
      firsts AS (
        SELECT DISTINCT ON (feature_id, entity_id, event_time, value_hash) *
        FROM input ORDER BY feature_id, entity_id, event_time, value_hash, ord
      ),
      numbered AS MATERIALIZED (
        SELECT f.*, nextval('feature_values_seq') AS seq FROM (SELECT * FROM firsts ORDER BY ord) f
      ),
      ins AS (
        INSERT INTO feature_values (feature_id, entity_id, event_time, seq, value_hash, value)
        SELECT feature_id, entity_id, event_time, seq, value_hash, value FROM numbered
        ORDER BY feature_id, entity_id, event_time, value_hash
        ON CONFLICT (feature_id, entity_id, event_time, value_hash) DO NOTHING
        RETURNING seq
      ),
      written AS MATERIALIZED (
        SELECT n.* FROM ins JOIN numbered n USING (seq)
      ),
      up AS (
        INSERT INTO online_values AS o (feature_id, entity_id, event_time, seq, value)
        SELECT DISTINCT ON (feature_id, entity_id) feature_id, entity_id, event_time, seq, value
        FROM written ORDER BY feature_id, entity_id, event_time DESC, seq DESC
        ON CONFLICT (feature_id, entity_id) DO UPDATE
          SET event_time = excluded.event_time, seq = excluded.seq, value = excluded.value
          WHERE (excluded.event_time, excluded.seq) > (o.event_time, o.seq)
      ),
      notified AS MATERIALIZED (
        SELECT pg_notify(${CHANGES_CHANNEL}, ${`values:${this.instance}`}) FROM (SELECT 1 FROM written LIMIT 1) x
      )
      SELECT w.ord, w.seq FROM written w LEFT JOIN notified ON true ORDER BY w.seq`;
    return result.map((r) => ({ index: offset + r.ord - 1, seq: r.seq }));
  }

  async getLatest(keys: ValueKey[]): Promise<(StoredRow | null)[]> {
    const out: (StoredRow | null)[] = new Array<StoredRow | null>(keys.length).fill(null);
    let offset = 0;
    for (const part of chunks(keys, READ_CHUNK_KEYS)) {
      const rows = await this.timed(
        "latest lookup",
        this.sql<FoundRow[]>`
          SELECT k.ord, o.event_time, o.seq, o.value
          FROM unnest(${numberArray(part.map((k) => k.feature_id))}::bigint[], ${textArray(part.map((k) => k.entity_id))}::text[]) WITH ORDINALITY AS k(feature_id, entity_id, ord)
          JOIN online_values o ON o.feature_id = k.feature_id AND o.entity_id = k.entity_id`,
      );
      for (const r of rows) out[offset + r.ord - 1] = { event_time: r.event_time, seq: r.seq, value: r.value };
      offset += part.length;
    }
    return out;
  }

  async getAsOf(keys: AsOfKey[]): Promise<(StoredRow | null)[]> {
    if (keys.length === 0) return [];
    const out: (StoredRow | null)[] = new Array<StoredRow | null>(keys.length).fill(null);
    const parts = chunks(keys, READ_CHUNK_KEYS);
    const run = async (sql: Querier): Promise<void> => {
      let offset = 0;
      for (const part of parts) {
        for (const r of await this.asOfChunk(sql, part)) out[offset + r.ord - 1] = { event_time: r.event_time, seq: r.seq, value: r.value };
        offset += part.length;
      }
    };
    // several statements read one snapshot, as SQLite's single read transaction does
    await this.timed("point-in-time lookup", parts.length === 1 ? run(this.sql) : this.sql.begin("isolation level repeatable read read only", run));
    return out;
  }

  /**
   * Set-based: one statement for the whole chunk. The online row is the greatest
   * (event_time, seq) of all history, so when its event time is not after `at` it is the
   * answer; only the other keys search the history index (the gated LATERALs do not run for
   * the rest), one index probe per partition at most, newest first.
   *
   * With a gap-free run of partitions [lo, hi) around now (see PartitionManager.span), `h`
   * searches only inside it, which the planner proves cannot touch DEFAULT, so it walks the
   * partitions newest first and stops at the first hit; `d` searches outside it (DEFAULT and
   * stray partitions) and runs only when `h` found nothing or `at` is beyond the run.
   */
  private asOfChunk(sql: Querier, keys: AsOfKey[]): Promise<FoundRow[]> {
    const keyRows = sql`unnest(${numberArray(keys.map((k) => k.feature_id))}::bigint[], ${textArray(keys.map((k) => k.entity_id))}::text[], ${numberArray(keys.map((k) => k.at))}::bigint[])
      WITH ORDINALITY AS k(feature_id, entity_id, at, ord)`;
    const span = this.partitions.span(Date.now());
    if (!span) {
      return sql<FoundRow[]>`
        SELECT k.ord,
               CASE WHEN o.event_time <= k.at THEN o.event_time ELSE h.event_time END AS event_time,
               CASE WHEN o.event_time <= k.at THEN o.seq ELSE h.seq END AS seq,
               CASE WHEN o.event_time <= k.at THEN o.value ELSE h.value END AS value
        FROM ${keyRows}
        JOIN online_values o ON o.feature_id = k.feature_id AND o.entity_id = k.entity_id
        LEFT JOIN LATERAL (
          SELECT f.event_time, f.seq, f.value FROM feature_values f
          WHERE o.event_time > k.at AND f.feature_id = k.feature_id AND f.entity_id = k.entity_id AND f.event_time <= k.at
          ORDER BY f.event_time DESC, f.seq DESC
          LIMIT 1
        ) h ON true
        WHERE o.event_time <= k.at OR h.seq IS NOT NULL`;
    }
    // literals, not parameters: plan-time pruning is what excludes DEFAULT (safe integers)
    const lo = sql.unsafe(String(Math.trunc(span.from)));
    const hi = sql.unsafe(String(Math.trunc(span.to)));
    return sql<FoundRow[]>`
      SELECT k.ord,
             CASE p.pick WHEN 0 THEN o.event_time WHEN 1 THEN h.event_time ELSE d.event_time END AS event_time,
             CASE p.pick WHEN 0 THEN o.seq WHEN 1 THEN h.seq ELSE d.seq END AS seq,
             CASE p.pick WHEN 0 THEN o.value WHEN 1 THEN h.value ELSE d.value END AS value
      FROM ${keyRows}
      JOIN online_values o ON o.feature_id = k.feature_id AND o.entity_id = k.entity_id
      LEFT JOIN LATERAL (
        SELECT f.event_time, f.seq, f.value FROM feature_values f
        WHERE o.event_time > k.at AND f.feature_id = k.feature_id AND f.entity_id = k.entity_id AND f.event_time <= k.at
          AND f.event_time >= ${lo} AND f.event_time < ${hi}
        ORDER BY f.event_time DESC, f.seq DESC
        LIMIT 1
      ) h ON true
      LEFT JOIN LATERAL (
        SELECT f.event_time, f.seq, f.value FROM feature_values f
        WHERE o.event_time > k.at AND (h.seq IS NULL OR k.at >= ${hi})
          AND f.feature_id = k.feature_id AND f.entity_id = k.entity_id AND f.event_time <= k.at
          AND (f.event_time < ${lo} OR f.event_time >= ${hi})
        ORDER BY f.event_time DESC, f.seq DESC
        LIMIT 1
      ) d ON true
      CROSS JOIN LATERAL (
        SELECT CASE
          WHEN o.event_time <= k.at THEN 0
          WHEN d.seq IS NOT NULL AND (h.seq IS NULL OR (d.event_time, d.seq) > (h.event_time, h.seq)) THEN 2
          WHEN h.seq IS NOT NULL THEN 1
        END AS pick
      ) p
      WHERE p.pick IS NOT NULL`;
  }

  // ───────────────────────────── change feed ─────────────────────────────

  private async readCounters(): Promise<CountedKind[]> {
    const rows = await this.timed("read change counters", this.sql<{ kind: string; version: number }[]>`SELECT kind, version FROM change_counters`);
    const changed: CountedKind[] = [];
    for (const r of rows) {
      if (r.kind !== "definitions" && r.kind !== "keys") continue;
      const prev = this.known[r.kind];
      if (prev !== undefined && r.version > prev) changed.push(r.kind);
      if (prev === undefined || r.version > prev) this.known[r.kind] = r.version;
    }
    return changed;
  }

  private notify(c: ChangeSet): void {
    for (const l of this.listeners) {
      try {
        l(c);
      } catch (err) {
        this.log.error({ err }, "change listener failed");
      }
    }
  }

  private onNotification(payload: string): void {
    const [kind, instance, version] = payload.split(":");
    if (instance === this.instance) return;
    if (kind === "values") return this.notify(change("values"));
    if (kind !== "definitions" && kind !== "keys") return;
    const v = Number(version);
    const prev = this.known[kind];
    if (Number.isSafeInteger(v) && prev !== undefined && v <= prev) return;
    if (Number.isSafeInteger(v)) this.known[kind] = v;
    this.notify(change(kind));
  }

  /** (Re-)establishes LISTEN on the dedicated connection. */
  private listen(): Promise<void> {
    this.listenAttempt ??= (async () => {
      const first = !this.listenTried;
      this.listenTried = true;
      this.listenSql ??= createClient({
        url: this.url,
        log: this.log,
        timeoutMs: this.timeoutMs,
        max: 1,
        dedicated: true,
        onnotify: (channel, payload) => {
          if (channel === CHANGES_CHANNEL) this.onNotification(payload);
        },
        onclose: () => {
          this.listening = false;
        },
      });
      await this.timed("listen", this.listenSql.unsafe(`LISTEN ${CHANGES_CHANNEL}`));
      this.listening = true;
      // notifications sent while not listening are lost: assume values changed
      if (!first) this.notify(change("values"));
    })().finally(() => (this.listenAttempt = undefined));
    return this.listenAttempt;
  }

  /** One tick of the change feed's fallback: re-LISTEN when needed, compare the change counters (exposed for tests). */
  async poll(): Promise<void> {
    if (this.polling || this.closed) return;
    this.polling = true;
    try {
      if (!this.listening) await this.listen();
      const changed = await this.readCounters();
      if (changed.length > 0) this.notify({ definitions: changed.includes("definitions"), keys: changed.includes("keys"), values: false });
      if (this.pollFailing) this.log.info("change feed: database reachable again");
      this.pollFailing = false;
    } catch (err) {
      if (!this.pollFailing) this.log.warn({ err }, "change feed: database unreachable; retrying every second");
      this.pollFailing = true;
    } finally {
      this.polling = false;
    }
  }

  watch(listener: (changes: ChangeSet) => void): void {
    this.listeners.push(listener);
    if (this.pollTimer) return;
    this.pollTimer = setInterval(() => void this.poll(), POLL_INTERVAL_MS);
    this.pollTimer.unref?.();
    void this.poll();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.pollTimer) clearInterval(this.pollTimer);
    if (this.maintenanceTimer) clearInterval(this.maintenanceTimer);
    this.pollTimer = this.maintenanceTimer = undefined;
    // The grace period is short: postgres.js waits it out in full for a connection that
    // broke mid-query (its `query` is never cleared), which happens after every outage.
    await Promise.all([this.listenSql?.end({ timeout: 1 }), this.sql.end({ timeout: 2 })]);
  }
}

function change(kind: ChangeKind): ChangeSet {
  return { definitions: kind === "definitions", keys: kind === "keys", values: kind === "values" };
}
