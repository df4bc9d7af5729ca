/**
 * The PostgreSQL backend against a REAL PostgreSQL, what is particular to it: migrations,
 * partitions, retention, the change feed's poll fallback, and outages (the server stopped, then
 * started again). What every backend shares (registry, keys, values, the change feed between
 * instances) is the store contract suite, test/contract/stores/.
 *
 * POSTGRES_URL names the server (each test creates its own database on it, so it needs a user
 * allowed to CREATE DATABASE). Without it the suite fails in CI (`CI` set); locally it starts a
 * throw-away server through the harness. The outage case always runs on its own harness server,
 * since it has to stop and start it.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, chownSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import pino from "pino";
import { postgresMigrations } from "../../migrations/index.ts";
import { createClient, timed } from "../../src/store/postgres/client.ts";
import { PostgresDatabase } from "../../src/store/postgres/database.ts";
import { monthStart, partitionName } from "../../src/store/postgres/partitions.ts";
import { StoreUnavailable } from "../../src/store/errors.ts";
import { migrationChecksum } from "../../src/store/migrations.ts";
import type { ChangeSet, ValueWrite } from "../../src/store/types.ts";
import { acrossMonths } from "../contract/stores/support.ts";
import { createDatabaseAt, startPostgres, type PgService } from "../harness/services.ts";
import { startTcpProxy } from "../support/tcp-proxy.ts";

const CI = Boolean(process.env.CI);
const log = pino({ level: "silent" });
const DAY = 86_400_000;
const cleanups: (() => Promise<unknown>)[] = [];
// closing after an outage can take a client's full grace period (see PostgresDatabase.close)
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
}, 120_000);

let harness: PgService | undefined;
async function ownServer(): Promise<PgService> {
  if (!harness) {
    const svc = await startPostgres();
    harness = svc;
    cleanups.push(() => svc.stop());
  }
  return harness;
}

/** The server under test: POSTGRES_URL, or (locally only) a harness server. */
async function resolveServer(): Promise<string | undefined> {
  const v = process.env.POSTGRES_URL;
  if (v) return v;
  if (CI) return undefined;
  try {
    return (await ownServer()).url;
  } catch (e) {
    console.warn(`POSTGRES_URL unset and the harness could not start PostgreSQL (${e instanceof Error ? e.message : String(e)}): skipping`);
    return undefined;
  }
}

const serverUrl = await resolveServer();

test("POSTGRES_URL names a real PostgreSQL in CI", () => {
  if (CI) expect(process.env.POSTGRES_URL, "POSTGRES_URL must be set in CI (run via `npm test`)").toBeTruthy();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
/** A 16-byte digest stand-in: distinct values get distinct hashes. */
const hashOf = (v: Uint8Array): Uint8Array => new Uint8Array(new Bun.CryptoHasher("md5").update(v).digest());
const val = (feature_id: number, entity_id: string, event_time: number, text: string): ValueWrite => {
  const value = enc(text);
  return { feature_id, entity_id, event_time, value, value_hash: hashOf(value) };
};
const text = (v: Uint8Array | undefined): string | undefined => (v === undefined ? undefined : new TextDecoder().decode(v));

async function freshUrl(base: string): Promise<string> {
  return createDatabaseAt(base);
}

function open(url: string, extra: { retentionDays?: number; timeoutMs?: number; bulkTimeoutMs?: number; poolSize?: number } = {}): PostgresDatabase {
  const db = new PostgresDatabase({ url, log, retentionDays: extra.retentionDays ?? 0, timeoutMs: extra.timeoutMs ?? 5_000, bulkTimeoutMs: extra.bulkTimeoutMs, poolSize: extra.poolSize });
  cleanups.push(() => db.close());
  return db;
}

/** A migrated database of its own. */
async function fresh(extra: { retentionDays?: number; timeoutMs?: number; bulkTimeoutMs?: number } = {}): Promise<{ db: PostgresDatabase; url: string }> {
  const url = await freshUrl(serverUrl as string);
  const db = open(url, extra);
  await db.migrate();
  return { db, url };
}

function raw(url: string): postgres.Sql {
  const sql = postgres(url, { max: 2, onnotice: () => {} });
  cleanups.push(() => sql.end({ timeout: 1 }));
  return sql;
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs: number, stepMs = 20): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    if (await cond()) return Date.now() - t0;
    if (Date.now() - t0 > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(stepMs);
  }
}

/** Milliseconds until `p` settles, and whether it rejected. */
async function settle(p: Promise<unknown>): Promise<{ ms: number; rejected: boolean }> {
  const t0 = Date.now();
  try {
    await p;
    return { ms: Date.now() - t0, rejected: false };
  } catch {
    return { ms: Date.now() - t0, rejected: true };
  }
}

/** A proxy to the server of `url` whose connections take `delayMs` to start (test/support/tcp-proxy.ts); the same URL with its port. */
function startDelayingProxy(url: string, delayMs: number): { url: string; stop: () => void } {
  const target = new URL(url);
  const proxy = startTcpProxy({ hostname: target.hostname, port: Number(target.port) }, { connectDelayMs: delayMs });
  const proxied = new URL(url);
  proxied.hostname = "127.0.0.1";
  proxied.port = String(proxy.port);
  return { url: proxied.href, stop: proxy.stop };
}

describe.skipIf(serverUrl === undefined)("PostgresDatabase", () => {
  describe("migrations", () => {
    test("migrate applies everything once; the second run is a no-op; assertMigrated then passes", async () => {
      const url = await freshUrl(serverUrl as string);
      const db = open(url);
      await expect(db.assertMigrated()).rejects.toThrow(
        `database is behind by ${postgresMigrations.length} migration(s); run \`feature-store migrate\``,
      );
      expect(await db.migrate()).toEqual(postgresMigrations.map((m) => m.name));
      expect(await db.migrate()).toEqual([]);
      await db.assertMigrated();
      const rows = await raw(url)`SELECT name, checksum FROM schema_migrations ORDER BY name`;
      expect(rows.map((r) => r.name)).toEqual(postgresMigrations.map((m) => m.name));
    });

    test("concurrent migrations (two processes) apply each migration exactly once", async () => {
      const url = await freshUrl(serverUrl as string);
      const [a, b] = await Promise.all([open(url).migrate(), open(url).migrate()]);
      expect([...a, ...b].sort()).toEqual(postgresMigrations.map((m) => m.name));
    }, 30_000);

    test("an applied migration whose text changed is refused with a clear error", async () => {
      const { db, url } = await fresh();
      await raw(url)`UPDATE schema_migrations SET checksum = 'tampered' WHERE name = '0001_init'`;
      await expect(db.migrate()).rejects.toThrow(/0001_init was changed after it was applied \(checksum mismatch\)/);
      await expect(open(url).assertMigrated()).rejects.toThrow(/checksum mismatch/);
    });

    test("a database with a migration this binary does not know is refused", async () => {
      const { url } = await fresh();
      await raw(url)`INSERT INTO schema_migrations (name, checksum, applied_at) VALUES ('9999_future', 'x', 0)`;
      await expect(open(url).assertMigrated()).rejects.toThrow(/9999_future/);
    });

    test("0005 on a database with history (written before it): the as-of index is gone everywhere, every row kept, as-of and history reads answer the same, ties by seq", async () => {
      const url = await freshUrl(serverUrl as string);
      const sql = raw(url);
      // the schema as a binary before 0005 left it
      const before = postgresMigrations.filter((m) => m.name < "0005");
      await sql`CREATE TABLE schema_migrations (name text PRIMARY KEY, checksum text NOT NULL, applied_at bigint NOT NULL)`;
      for (const m of before) {
        await sql.begin(async (tx) => {
          await tx.unsafe(m.sql);
          await tx`INSERT INTO schema_migrations (name, checksum, applied_at) VALUES (${m.name}, ${migrationChecksum(m)}, 0)`;
        });
      }
      const old = open(url);
      // history across partitions and DEFAULT, and ties: values at one event time written one
      // after another (each later write must win), so the value hash orders them unlike seq
      const { rows, keys, expected } = acrossMonths(Date.now());
      await old.writeValues(rows);
      const T = Date.now() - 3 * 86_400_000;
      const tied: string[] = [];
      for (let i = 0; i < 8; i++) {
        tied.push(`tie${i}`);
        await old.writeValues([val(2, "t", T, `tie${i}`), val(2, "t", T + 1000, `next${i}`)]);
      }
      // and a bulk (staged) write of long histories
      const bulk: ValueWrite[] = [];
      for (let n = 0; n < 200; n++) for (let e = 0; e < 20; e++) bulk.push(val(3, `b${e}`, T - 86_400_000 + n * 60_000, `b${e}.${n}`));
      await old.writeValues(bulk);
      const asOfKeys = [...keys, { feature_id: 2, entity_id: "t", at: T }, { feature_id: 2, entity_id: "t", at: T + 999 }, { feature_id: 3, entity_id: "b7", at: T - 86_400_000 + 99 * 60_000 + 1 }];
      const answers = async (db: PostgresDatabase) => ({
        asOf: (await db.getAsOf(asOfKeys)).map((r) => (r ? [text(r.value), r.seq, r.event_time] : null)),
        history: await db.getHistory([1, 2, 3], ["e", "t", "b3"], Date.now() + 400 * 86_400_000, 10_000),
      });
      const was = await answers(old);
      expect(was.asOf.map((a) => (a ? a[0] : null))).toEqual([...expected, "tie7", "tie7", "b7.99"]);
      const indexes = async () => (await sql`SELECT indexname FROM pg_indexes WHERE tablename LIKE 'feature_values%'`).map((r) => r.indexname as string);
      const asOfIndex = (x: string) => x === "feature_values_as_of" || x.endsWith("_event_time_seq_idx");
      expect((await indexes()).filter(asOfIndex).length).toBeGreaterThan(2);
      const count = async () => Number((await sql`SELECT count(*)::int AS n FROM feature_values`)[0]?.n);
      const n = await count();

      expect(await old.migrate()).toEqual(["0005_one_history_index"]);
      await old.assertMigrated();
      // one index per partition (the identity), none ordered by seq
      const after = await indexes();
      expect(after.filter(asOfIndex)).toEqual([]);
      expect(after).toContain("feature_values_identity");
      expect(await count()).toBe(n);
      expect(await answers(old)).toEqual(was);
      expect(await answers(open(url))).toEqual(was);
      // a tie written after the migration still wins on seq
      await old.writeValues([val(2, "t", T, "tie-after")]);
      expect(text((await old.getAsOf([{ feature_id: 2, entity_id: "t", at: T }]))[0]?.value)).toBe("tie-after");
    });

    test("migrate creates the partitions of this month and the next three", async () => {
      const { url } = await fresh();
      const names = (await raw(url)`SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'feature_values'::regclass`).map((r) => r.relname as string);
      for (let i = 0; i <= 3; i++) expect(names).toContain(partitionName(monthStart(Date.now(), i)));
      expect(names).toContain("feature_values_default");
    });
  });

  describe("values", () => {
    const T = Date.UTC(2024, 0, 15);

    test("an instance that has not looked at the partitions yet takes the plain as-of path: same answers", async () => {
      // (the answers themselves, across partitions and DEFAULT, are in the store contract suite)
      const { db, url } = await fresh();
      const { rows, keys, expected } = acrossMonths(Date.now());
      await db.writeValues(rows);
      expect((await db.getAsOf(keys)).map((r) => text(r?.value) ?? null)).toEqual(expected);
      const cold = open(url);
      expect((await cold.getAsOf(keys)).map((r) => text(r?.value) ?? null)).toEqual(expected);
    });

  });

  describe("partitions and retention", () => {
    const partitionOf = async (url: string, entity: string): Promise<string[]> =>
      (await raw(url)`SELECT tableoid::regclass::text AS p FROM feature_values WHERE entity_id = ${entity} ORDER BY event_time`).map((r) => r.p as string);

    test("a write creates the partitions it needs; times outside the window go to DEFAULT", async () => {
      const { db, url } = await fresh();
      const future = monthStart(Date.now(), 14) + 5 * DAY;
      await db.writeValues([val(1, "near", future, "f"), val(1, "far", Date.UTC(1990, 1, 1), "p"), val(1, "far", Date.UTC(2200, 1, 1), "q")]);
      expect(await partitionOf(url, "near")).toEqual([partitionName(monthStart(future))]);
      expect(await partitionOf(url, "far")).toEqual(["feature_values_default", "feature_values_default"]);
    });

    test("rows that landed in DEFAULT move into their month's partition when it is created", async () => {
      const { db, url } = await fresh();
      const month = monthStart(Date.now(), 20);
      // written around the application (no partition yet): DEFAULT takes it
      await raw(url)`INSERT INTO feature_values (feature_id, entity_id, event_time, value_hash, value) VALUES (1, 'm', ${month + 1}, ${Buffer.alloc(16, 1)}, ${Buffer.from("early")})`;
      expect(await partitionOf(url, "m")).toEqual(["feature_values_default"]);
      await db.writeValues([val(1, "m", month + 2, "late")]);
      expect(await partitionOf(url, "m")).toEqual([partitionName(month), partitionName(month)]);
      const [r] = await db.getAsOf([{ feature_id: 1, entity_id: "m", at: month + 1 }]);
      expect(text(r?.value)).toBe("early");
    });

    test("retention drops whole partitions older than retentionDays (and old DEFAULT rows), keeping the rest", async () => {
      const url = await freshUrl(serverUrl as string);
      const writer = open(url);
      await writer.migrate();
      const now = Date.now();
      const old = monthStart(now, -3) + DAY; // entirely older than 30 days once its month ended
      await writer.writeValues([val(1, "e", old, "old"), val(1, "e", now - DAY, "recent"), val(1, "x", Date.UTC(1990, 0, 1), "ancient")]);
      const db = open(url, { retentionDays: 30 });
      await db.assertMigrated(); // runs maintenance, which already applies retention
      const names = (await raw(url)`SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'feature_values'::regclass`).map((r) => r.relname as string);
      expect(names).not.toContain(partitionName(monthStart(old)));
      expect(names).toContain(partitionName(monthStart(now)));
      expect(await db.getAsOf([{ feature_id: 1, entity_id: "e", at: now - 2 * DAY }])).toEqual([null]);
      expect(text((await db.getAsOf([{ feature_id: 1, entity_id: "e", at: now }]))[0]?.value)).toBe("recent");
      expect(await partitionOf(url, "x")).toEqual([]);
      // later: the current month expires too
      const dropped = await db.dropExpiredPartitions(monthStart(now, 2) + 31 * DAY);
      expect(dropped).toContain(partitionName(monthStart(now)));
      expect(await db.dropExpiredPartitions(monthStart(now, 2) + 31 * DAY)).toEqual([]);
      // with no retention nothing is dropped
      expect(await writer.dropExpiredPartitions(now + 10_000 * DAY)).toEqual([]);
    });
  });

  describe("change feed", () => {
    test("a registration's notification names its tenant; a missed notification makes the next one name none", async () => {
      const { db: server, url } = await fresh();
      const other = open(url);
      await other.assertMigrated();
      const seen: ChangeSet[] = [];
      server.watch((c) => seen.push(c));
      await sleep(300);
      const register = (tenant: string) =>
        other.registerDefinitions(tenant, () => ({ plan: { inserts: [{ tenant, name: "f", version: 1, dtype: "int64", entity_type: "user", ttl_hours: null, description: null, owner: null, tags: {}, created_at: 1, updated_at: 1 }], updates: [] }, apply: true, result: null }));
      await register("t1");
      await waitFor("t1 change", () => seen.some((c) => c.definitions), 5_000);
      expect(seen.filter((c) => c.definitions).map((c) => c.tenants)).toEqual([["t1"]]);
      // a bump nobody was told about: the next notification skips a version, so tenants are unknown
      await raw(url)`UPDATE change_counters SET version = version + 1 WHERE kind = 'definitions'`;
      await register("t2");
      await waitFor("t2 change", () => seen.filter((c) => c.definitions).length >= 2, 5_000);
      expect(seen.filter((c) => c.definitions)[1]?.tenants).toBeUndefined();
    });

    test("a counter bump without NOTIFY (a missed notification) is still noticed by the poll", async () => {
      const { db: server, url } = await fresh();
      const seen: ChangeSet[] = [];
      server.watch((c) => seen.push(c));
      await sleep(300);
      await raw(url)`UPDATE change_counters SET version = version + 1 WHERE kind = 'keys'`;
      await waitFor("keys change from the poll", () => seen.some((c) => c.keys), 2_500);
    });

    test("a poll that fails for another reason than an outage is logged as an error each time, not as the database unreachable", async () => {
      const url = await freshUrl(serverUrl as string);
      const lines: { level: number; msg: string }[] = [];
      const captured = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
      const db = new PostgresDatabase({ url, log: captured, retentionDays: 0, timeoutMs: 5_000 });
      cleanups.push(() => db.close());
      await db.migrate();
      db.watch(() => {});
      await sleep(300);
      // a broken schema: a bug to fix, not an outage to wait out
      await raw(url)`ALTER TABLE change_counters RENAME TO change_counters_moved`;
      await waitFor("two failed polls logged", () => lines.filter((l) => l.msg === "change feed: poll failed; retrying every second").length >= 2, 5_000);
      expect(lines.filter((l) => l.msg === "change feed: poll failed; retrying every second").every((l) => l.level === 50)).toBe(true);
      expect(lines.some((l) => l.msg.includes("unreachable"))).toBe(false);
      await raw(url)`ALTER TABLE change_counters_moved RENAME TO change_counters`;
    });

  });

  describe("timeouts", () => {
    test("a point-in-time read may take longer than the store timeout, up to the bulk one; an online read may not", async () => {
      const storeTimeoutMs = 100;
      const { db, url } = await fresh({ timeoutMs: storeTimeoutMs, bulkTimeoutMs: 60_000 });
      const now = Date.now();
      const old = Date.UTC(2024, 0, 1); // before the recent partitions: the history join
      await db.writeValues([val(1, "e", old, "old"), val(1, "e", now - 1_000, "recent")]);
      const locker = raw(url);
      // a writer holding both tables: every read waits for it
      let release: () => void = () => {};
      const released = new Promise<void>((r) => (release = r));
      const held = locker.begin(async (tx) => {
        await tx`LOCK TABLE online_values, feature_values IN ACCESS EXCLUSIVE MODE`;
        await released;
      });
      await waitFor("lock taken", async () => (await locker`SELECT 1 FROM pg_locks WHERE mode = 'AccessExclusiveLock' AND relation = 'online_values'::regclass AND granted`).length > 0, 5_000);

      // the online read: 503 material (StoreUnavailable) after STORE_TIMEOUT_MS
      await expect(db.getLatest([{ feature_id: 1, entity_id: "e" }])).rejects.toBeInstanceOf(StoreUnavailable);

      // the point-in-time reads (the recent and the history plan) wait for the lock well past STORE_TIMEOUT_MS ...
      const recent = db.getAsOf([{ feature_id: 1, entity_id: "e", at: now }]);
      const history = db.getAsOf([{ feature_id: 1, entity_id: "e", at: old }]);
      const waiting = async (): Promise<number> =>
        (await locker`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND wait_event_type = 'Lock' AND query LIKE '%unnest%'`).length;
      await waitFor("both reads blocked by the lock", async () => (await waiting()) === 2, 10_000);
      await sleep(storeTimeoutMs * 5);
      expect(await waiting()).toBe(2);
      release();
      await held;
      // ... and then answer
      expect(text((await recent)[0]?.value)).toBe("recent");
      expect(text((await history)[0]?.value)).toBe("old");
      // the connection's own timeout is unchanged after the bulk read's transaction
      expect(text((await db.getLatest([{ feature_id: 1, entity_id: "e" }]))[0]?.value)).toBe("recent");
    }, 60_000);

    // The 500 of session 7 ("undefined is not an object (evaluating 'n.ord')" in getLatest, on a
    // busy machine with Redis timing out): an online read timed out while its rows were still
    // arriving, and the next read on that connection got an answer with holes in it.
    test("an online read cut off by its timeout while its rows stream in (a busy process) leaves its connection sound: the next read answers right", async () => {
      const url = await freshUrl(serverUrl as string);
      const writer = open(url);
      await writer.migrate();
      // ~40 MB of hex on the wire: far more than the socket buffers hold, so the server is
      // still sending when the timeout hits
      const n = 1_000;
      const pad = "x".repeat(20_000);
      for (let i = 0; i < n; i += 100) {
        await writer.writeValues(Array.from({ length: 100 }, (_, j) => val(1, `e${i + j}`, Date.UTC(2024, 0, 1), `v${i + j}:${pad}`)));
      }
      const keys = Array.from({ length: n }, (_, i) => ({ feature_id: 1, entity_id: `e${i}` }));
      // one connection, as under load every connection of the pool is one
      const reader = open(url, { timeoutMs: 300, poolSize: 1 });
      expect(text((await reader.getLatest([{ feature_id: 1, entity_id: "e7" }]))[0]?.value)).toBe(`v7:${pad}`);

      const big = reader.getLatest(keys).then(
        () => "answered",
        (err: unknown) => err,
      );
      await sleep(20);
      // the process gets no CPU for a while (the server blocks on the full socket, and its
      // statement_timeout and our timeout pass); then it reads the rows that were sent and
      // the statement's error after them
      Bun.sleepSync(1_500);
      expect(await big).toBeInstanceOf(StoreUnavailable);
      const watcher = raw(url);
      await waitFor(
        "the cut-off read over on the server",
        async () => (await watcher`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active' AND query LIKE '%JOIN online_values o%'`).length === 0,
        10_000,
      );
      // (no cancel request of ours is in flight: a sent query is left to the statement_timeout)
      await sleep(300);

      const again = await reader.getLatest([
        { feature_id: 1, entity_id: "e3" },
        { feature_id: 1, entity_id: "missing" },
        { feature_id: 1, entity_id: "e999" },
      ]);
      expect(again.map((r) => text(r?.value)?.split(":")[0] ?? null)).toEqual(["v3", null, "v999"]);
      expect(text((await reader.getLatest(keys.slice(0, 50))).at(-1)?.value)?.split(":")[0]).toBe("v49");
    }, 120_000);
  });

  describe("the client (postgres.js, as createClient configures it)", () => {
    // scripts/patch-deps.ts (a cancelled first query): a query given up while the connection it
    // opened was starting was skipped once the connection was ready, and the connection never
    // went back to the pool (stuck "connecting" until its max_lifetime; for the change feed's
    // dedicated LISTEN client, until the server dropped it)
    test("a query given up while its new connection is still starting leaves the connection to the next queries", async () => {
      const proxy = startDelayingProxy(serverUrl as string, 600);
      cleanups.push(async () => proxy.stop());
      for (const dedicated of [false, true]) {
        const sql = createClient({ url: proxy.url, log, timeoutMs: 5_000, max: 1, dedicated });
        cleanups.push(() => sql.end({ timeout: 1 }));
        // the pool's one connection starts for this query, and takes 600 ms to
        const first = await timed("first read", sql`SELECT 1 AS one`, 100).catch((e: unknown) => e);
        expect(first).toBeInstanceOf(StoreUnavailable);
        // before: every later query waited on the stuck connection and timed out
        const next = await timed("next read", sql<{ two: number }[]>`SELECT 2 AS two`, 3_000);
        expect(next[0]?.two).toBe(2);
        const [again] = await timed("third read", sql<{ three: number }[]>`SELECT 3 AS three`, 3_000);
        expect(again?.three).toBe(3);
      }
    }, 30_000);

    // A cancel request names the backend, not the query: sent for a query that finishes before
    // it arrives, it cancels the next one the connection runs (session 8's spurious 503s).
    test("a query timed out after it was sent is not cancelled from the client (the server's statement_timeout bounds it); the next query on its connection answers", async () => {
      const sql = createClient({ url: serverUrl as string, log, timeoutMs: 5_000, max: 1 });
      cleanups.push(() => sql.end({ timeout: 1 }));
      await sql`SELECT 1`; // the one connection is open
      const slow = sql<{ one: number }[]>`SELECT 1 AS one FROM pg_sleep(0.4)`;
      const outcome = slow.then(
        (rows) => `answered ${rows[0]?.one}`,
        (e: unknown) => `failed ${(e as { code?: string }).code ?? String(e)}`,
      );
      const err = await timed("slow read", slow, 100).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StoreUnavailable);
      expect((err as Error).message).toBe("postgres slow read timed out after 100 ms");
      const next = await timed("next read", sql<{ two: number }[]>`SELECT 2 AS two`, 5_000);
      expect(next[0]?.two).toBe(2);
      // before: cancelled from here, "failed 57014" (canceling statement due to user request)
      expect(await outcome).toBe("answered 1");
      // the server's own timeout still ends a statement that runs too long
      const short = createClient({ url: serverUrl as string, log, timeoutMs: 200, max: 1 });
      cleanups.push(() => short.end({ timeout: 1 }));
      const stuck = short`SELECT pg_sleep(2)`;
      const stuckOutcome = stuck.then(
        () => "answered",
        (e: unknown) => (e as { code?: string }).code ?? String(e),
      );
      expect(await timed("stuck read", stuck, 50).catch((e: unknown) => e)).toBeInstanceOf(StoreUnavailable);
      expect(await stuckOutcome).toBe("57014");
    }, 30_000);

    // porsager/postgres#1119, fixed by scripts/patch-deps.ts until upstream releases a fix
    test("a query that fails after some of its rows arrived leaves the connection's next results whole", async () => {
      const sql = createClient({ url: serverUrl as string, log, timeoutMs: 5_000, max: 1 });
      cleanups.push(() => sql.end({ timeout: 1 }));
      // ~300 KB of rows are sent (the server flushes every 8 KB) before row 300 fails
      const failing = () => sql`SELECT i, repeat('x', 1000) AS pad, 1 / (300 - i) AS boom FROM generate_series(1, 400) i`;
      const err = await failing().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(postgres.PostgresError);
      expect((err as postgres.PostgresError).code).toBe("22012");
      const rows = await sql<{ x: number }[]>`SELECT x FROM generate_series(1, 5) x`;
      expect(rows.length).toBe(5);
      expect(Array.from(rows, (r) => r?.x)).toEqual([1, 2, 3, 4, 5]);

      // the same for a result of arrays (.values(), as getHistory reads)
      await failing()
        .values()
        .catch(() => undefined);
      const values = await sql`SELECT x, x * 2 FROM generate_series(1, 3) x`.values();
      expect(Array.from(values)).toEqual([
        [1, 2],
        [2, 4],
        [3, 6],
      ]);
      // and for a single row read by destructuring (a registry or key lookup): never a silent miss
      await failing().catch(() => undefined);
      const [one] = await sql<{ v: string }[]>`SELECT 'found' AS v`;
      expect(one?.v).toBe("found");
    });
  });

  describe("outages", () => {
    test("calls fail fast while the server is down and work again once it is back", async () => {
      const svc = await ownServer();
      const url = await svc.createDatabase();
      const db = open(url, { timeoutMs: 1_000 });
      await db.migrate();
      const seen: ChangeSet[] = [];
      db.watch((c) => seen.push(c));
      const k = { feature_id: 1, entity_id: "e" };
      await db.writeValues([val(1, "e", Date.UTC(2024, 0, 1), "before")]);
      await db.ping();

      await svc.stopServer();
      for (const call of [() => db.ping(), () => db.getLatest([k]), () => db.writeValues([val(1, "e", Date.UTC(2024, 0, 2), "during")]), () => db.loadDefinitions()]) {
        const r = await settle(call());
        expect(r.rejected).toBe(true);
        expect(r.ms).toBeLessThan(3_000);
      }
      // an outage is a StoreUnavailable (callers answer 503 and retry), never a bare driver error
      await expect(db.getLatest([k])).rejects.toBeInstanceOf(StoreUnavailable);

      await svc.startServer();
      const ms = await waitFor("database usable again", async () => !(await settle(db.ping())).rejected, 10_000, 100);
      expect(ms).toBeLessThan(10_000);
      expect(text((await db.getLatest([k]))[0]?.value)).toBe("before");
      await db.writeValues([val(1, "e", Date.UTC(2024, 0, 3), "after")]);
      expect(text((await db.getLatest([k]))[0]?.value)).toBe("after");
      // notifications may have been missed meanwhile: the feed says values changed
      await waitFor("values change after reconnect", () => seen.some((c) => c.values), 5_000);
    }, 60_000);
  });

  describe("TLS", () => {
    test("sslmode and sslrootcert in the URL: require encrypts, verify-full verifies the server", async () => {
      const dir = mkdtempSync(join(tmpdir(), "fs-test-pgtls-"));
      cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
      const cert = (name: string): void => {
        const r = Bun.spawnSync(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
          "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", join(dir, `${name}.key`), "-out", join(dir, `${name}.pem`)], { stderr: "pipe" });
        if (r.exitCode !== 0) throw new Error(`openssl failed: ${r.stderr.toString()}`);
      };
      cert("server");
      cert("stranger");
      // TLS is required for every database but `postgres` (which the harness uses unencrypted)
      writeFileSync(join(dir, "pg_hba.conf"), "local all all trust\nhost postgres all 127.0.0.1/32 trust\nhostssl all all 127.0.0.1/32 trust\n");
      chmodSync(dir, 0o755);
      chmodSync(join(dir, "server.key"), 0o600);
      if (process.getuid?.() === 0) {
        const ids = (flag: string): number => Number(Bun.spawnSync(["id", flag, "postgres"]).stdout.toString().trim());
        for (const f of ["server.key", "server.pem", "pg_hba.conf"]) chownSync(join(dir, f), ids("-u"), ids("-g"));
      }
      const svc = await startPostgres({
        settings: { ssl: true, ssl_cert_file: join(dir, "server.pem"), ssl_key_file: join(dir, "server.key"), hba_file: join(dir, "pg_hba.conf") },
      });
      cleanups.push(() => svc.stop());

      const plain = open(`${svc.url}?sslmode=disable`, { timeoutMs: 2_000 });
      await expect(plain.ping()).rejects.toThrow();

      const required = open(`${svc.url}?sslmode=require`);
      expect(await required.migrate()).toEqual(postgresMigrations.map((m) => m.name));
      await required.writeValues([val(1, "e", Date.UTC(2024, 0, 1), "over tls")]);

      const verified = open(`${svc.url}?sslmode=verify-full&sslrootcert=${encodeURIComponent(join(dir, "server.pem"))}`);
      expect(text((await verified.getLatest([{ feature_id: 1, entity_id: "e" }]))[0]?.value)).toBe("over tls");

      const wrongCa = open(`${svc.url}?sslmode=verify-full&sslrootcert=${encodeURIComponent(join(dir, "stranger.pem"))}`, { timeoutMs: 2_000 });
      await expect(wrongCa.ping()).rejects.toThrow();
    }, 60_000);
  });
});
