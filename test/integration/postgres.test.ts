/**
 * The PostgreSQL backend against a REAL PostgreSQL: migrations, registry, keys, values (dedupe,
 * write order, latest and point-in-time reads), partitions, retention, the change feed between
 * two instances, and outages (the server stopped, then started again).
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
import { PostgresDatabase } from "../../src/store/postgres/database.ts";
import { monthStart, partitionName } from "../../src/store/postgres/partitions.ts";
import type { AsOfKey, ChangeSet, DefinitionRow, NewDefinition, ValueWrite } from "../../src/store/types.ts";
import { createDatabaseAt, startPostgres, type PgService } from "../harness/services.ts";

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

function open(url: string, extra: { retentionDays?: number; timeoutMs?: number } = {}): PostgresDatabase {
  const db = new PostgresDatabase({ url, log, retentionDays: extra.retentionDays ?? 0, timeoutMs: extra.timeoutMs ?? 5_000 });
  cleanups.push(() => db.close());
  return db;
}

/** A migrated database of its own. */
async function fresh(extra: { retentionDays?: number; timeoutMs?: number } = {}): Promise<{ db: PostgresDatabase; url: string }> {
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

const def = (tenant: string, name: string, version: number, extra: Partial<NewDefinition> = {}): NewDefinition => ({
  tenant,
  name,
  version,
  dtype: "int64",
  entity_type: "user",
  ttl_hours: null,
  description: null,
  owner: null,
  tags: {},
  created_at: 1_000,
  updated_at: 1_000,
  ...extra,
});

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

    test("migrate creates the partitions of this month and the next three", async () => {
      const { url } = await fresh();
      const names = (await raw(url)`SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'feature_values'::regclass`).map((r) => r.relname as string);
      for (let i = 0; i <= 3; i++) expect(names).toContain(partitionName(monthStart(Date.now(), i)));
      expect(names).toContain("feature_values_default");
    });
  });

  describe("registry and keys", () => {
    test("registerDefinitions inserts (returning rows in plan order), updates metadata, and reads the tenant's current rows", async () => {
      const { db } = await fresh();
      const first = await db.registerDefinitions("acme", (current) => ({
        plan: { inserts: [def("acme", "b_feature", 1, { tags: { team: "x" }, ttl_hours: 1.5 }), def("acme", "a_feature", 1, { dtype: "float32[]" })], updates: [] },
        apply: true,
        result: current.length,
      }));
      expect(first.result).toBe(0);
      expect(first.inserted.map((d) => d.name)).toEqual(["b_feature", "a_feature"]);
      const b = first.inserted[0] as DefinitionRow;
      expect(b).toMatchObject({ tenant: "acme", version: 1, dtype: "int64", ttl_hours: 1.5, tags: { team: "x" }, created_at: 1_000 });
      expect(typeof b.id).toBe("number");

      // another tenant's rows are not part of `current`
      await db.registerDefinitions("other", () => ({ plan: { inserts: [def("other", "b_feature", 1)], updates: [] }, apply: true, result: null }));

      const second = await db.registerDefinitions("acme", (current) => ({
        plan: { inserts: [], updates: [{ id: b.id, description: "desc", owner: "me", tags: { k: "v" }, updated_at: 2_000 }] },
        apply: true,
        result: current.map((d) => d.name),
      }));
      expect(second.result).toEqual(["b_feature", "a_feature"]);
      expect(second.inserted).toEqual([]);
      const all = await db.loadDefinitions();
      expect(all.map((d) => `${d.tenant}/${d.name}`)).toEqual(["acme/b_feature", "acme/a_feature", "other/b_feature"]);
      expect(all[0]).toMatchObject({ description: "desc", owner: "me", tags: { k: "v" }, created_at: 1_000, updated_at: 2_000 });
    });

    test("apply=false and a throwing decide change nothing", async () => {
      const { db } = await fresh();
      const dry = await db.registerDefinitions("t", () => ({ plan: { inserts: [def("t", "f", 1)], updates: [] }, apply: false, result: "dry" }));
      expect(dry).toEqual({ result: "dry", inserted: [] });
      await expect(
        db.registerDefinitions("t", () => {
          throw new Error("nope");
        }),
      ).rejects.toThrow("nope");
      // a failing insert rolls back the whole plan
      await db.registerDefinitions("t", () => ({ plan: { inserts: [def("t", "f", 1)], updates: [] }, apply: true, result: null }));
      await expect(
        db.registerDefinitions("t", () => ({ plan: { inserts: [def("t", "g", 1), def("t", "f", 1)], updates: [] }, apply: true, result: null })),
      ).rejects.toThrow();
      expect((await db.loadDefinitions()).map((d) => d.name)).toEqual(["f"]);
    });

    test("registrations of one tenant are serialised: concurrent decides see each other's inserts", async () => {
      const { db, url } = await fresh();
      const other = open(url);
      await other.assertMigrated();
      const register = (d: PostgresDatabase) =>
        d.registerDefinitions("t", (current) => {
          const exists = current.some((c) => c.name === "f");
          return { plan: { inserts: exists ? [] : [def("t", "f", 1)], updates: [] }, apply: true, result: exists };
        });
      const results = await Promise.all([register(db), register(other), register(db), register(other)]);
      expect(results.filter((r) => !r.result)).toHaveLength(1);
      expect(await db.loadDefinitions()).toHaveLength(1);
    });

    test("keys: create, list newest first (per tenant or all), revoke once", async () => {
      const { db } = await fresh();
      const key = (id: string, tenant: string, created_at: number) => ({
        id,
        tenant,
        scopes: ["read", "write"],
        hash: `hash-${id}`,
        prefix: `fs_${id}`,
        created_at,
        expires_at: id === "k2" ? 9_999 : null,
        revoked_at: null,
      });
      await db.createKey(key("k1", "a", 1_000));
      await db.createKey(key("k2", "a", 2_000));
      await db.createKey(key("k3", "b", 1_500));
      expect((await db.listKeys()).map((k) => k.id)).toEqual(["k2", "k3", "k1"]);
      expect(await db.listKeys("a")).toEqual([key("k2", "a", 2_000), key("k1", "a", 1_000)]);
      await expect(db.createKey({ ...key("k4", "a", 3_000), hash: "hash-k1" })).rejects.toThrow();
      expect(await db.revokeKey("k1", 5_000)).toBe(true);
      expect(await db.revokeKey("k1", 6_000)).toBe(false);
      expect(await db.revokeKey("nope", 6_000)).toBe(false);
      expect((await db.listKeys("a")).find((k) => k.id === "k1")?.revoked_at).toBe(5_000);
    });
  });

  describe("values", () => {
    const T = Date.UTC(2024, 0, 15);

    test("seqs follow input order; identical re-sends (also within one batch) are stored once and get no seq", async () => {
      const { db, url } = await fresh();
      const first = await db.writeValues([val(1, "u1", T, "a"), val(1, "u2", T, "b"), val(1, "u1", T, "a"), val(2, "u1", T - 5, "c")]);
      expect(first.map((w) => [w.feature_id, w.entity_id, w.event_time, text(w.value)])).toEqual([
        [1, "u1", T, "a"],
        [1, "u2", T, "b"],
        [2, "u1", T - 5, "c"],
      ]);
      const seqs = first.map((w) => w.seq);
      expect([...seqs].sort((x, y) => x - y)).toEqual(seqs);
      expect(new Set(seqs).size).toBe(3);

      expect(await db.writeValues([val(1, "u1", T, "a"), val(2, "u1", T - 5, "c")])).toEqual([]);
      const again = await db.writeValues([val(1, "u1", T, "a"), val(1, "u1", T, "z")]);
      expect(again.map((w) => text(w.value))).toEqual(["z"]);
      expect(again[0]?.seq).toBeGreaterThan(Math.max(...seqs));
      const [{ n }] = (await raw(url)`SELECT count(*)::int AS n FROM feature_values`) as unknown as [{ n: number }];
      expect(n).toBe(4);
    });

    test("the latest value is the greatest (event_time, seq); an older write stays in history only", async () => {
      const { db } = await fresh();
      const k = { feature_id: 7, entity_id: "e" };
      await db.writeValues([val(7, "e", T, "now")]);
      const old = await db.writeValues([val(7, "e", T - DAY, "yesterday")]);
      expect(old).toHaveLength(1);
      expect(text((await db.getLatest([k]))[0]?.value)).toBe("now");
      expect(text((await db.getAsOf([{ ...k, at: T - 1 }]))[0]?.value)).toBe("yesterday");
      // same event time, written later: wins on seq, online and as of T
      await db.writeValues([val(7, "e", T, "now, corrected")]);
      expect(text((await db.getLatest([k]))[0]?.value)).toBe("now, corrected");
      expect(text((await db.getAsOf([{ ...k, at: T }]))[0]?.value)).toBe("now, corrected");
    });

    test("several rows for one key in one batch: the greatest (event_time, seq) goes online, in any input order", async () => {
      const { db } = await fresh();
      const w = await db.writeValues([val(1, "e", T, "t0-first"), val(1, "e", T + 10, "t10"), val(1, "e", T - 10, "t-10"), val(1, "e", T + 10, "t10-later"), val(1, "e", T, "t0-second")]);
      expect(w).toHaveLength(5);
      const [latest] = await db.getLatest([{ feature_id: 1, entity_id: "e" }]);
      expect(text(latest?.value)).toBe("t10-later");
      expect(latest?.seq).toBe(w[3]?.seq);
      const asOf = await db.getAsOf([
        { feature_id: 1, entity_id: "e", at: T },
        { feature_id: 1, entity_id: "e", at: T + 9 },
        { feature_id: 1, entity_id: "e", at: T - 11 },
        { feature_id: 1, entity_id: "e", at: T + 10 },
      ]);
      expect(asOf.map((r) => text(r?.value))).toEqual(["t0-second", "t0-second", undefined, "t10-later"]);
    });

    test("getLatest / getAsOf answer in key order, with null for never written, nothing after T leaking", async () => {
      const { db } = await fresh();
      const odd = 'we"ird \\ {id}, ünïcode ✓';
      await db.writeValues([val(1, odd, T, "x1"), val(1, odd, T + 1_000, "x2"), val(2, "b", T + 500, "y1")]);
      const latest = await db.getLatest([
        { feature_id: 2, entity_id: "b" },
        { feature_id: 1, entity_id: "missing" },
        { feature_id: 1, entity_id: odd },
        { feature_id: 2, entity_id: "b" },
      ]);
      expect(latest.map((r) => text(r?.value) ?? null)).toEqual(["y1", null, "x2", "y1"]);
      expect(latest[2]).toMatchObject({ event_time: T + 1_000 });
      expect(typeof latest[2]?.seq).toBe("number");
      const asOf = await db.getAsOf([
        { feature_id: 1, entity_id: odd, at: T + 999 },
        { feature_id: 1, entity_id: odd, at: T - 1 },
        { feature_id: 2, entity_id: "b", at: T + 499 },
        { feature_id: 2, entity_id: "b", at: T + 500 },
        { feature_id: 3, entity_id: "b", at: T + 500 },
        { feature_id: 1, entity_id: odd, at: T + 1_000 },
      ]);
      expect(asOf.map((r) => text(r?.value) ?? null)).toEqual(["x1", null, null, "y1", null, "x2"]);
      expect(asOf[0]).toMatchObject({ event_time: T });
      expect(await db.writeValues([])).toEqual([]);
      expect(await db.getLatest([])).toEqual([]);
      expect(await db.getAsOf([])).toEqual([]);
    });

    test("as-of reads stay correct across months, far past and far future (DEFAULT partition)", async () => {
      const { db, url } = await fresh();
      const now = Date.now();
      const times = [Date.UTC(1990, 5, 1), now - 400 * DAY, now - 40 * DAY, now - DAY, now + 200 * DAY, Date.UTC(2150, 0, 1)];
      await db.writeValues(times.map((t, i) => val(1, "e", t, `v${i}`)));
      const keys: AsOfKey[] = [];
      const expected: (string | null)[] = [];
      for (let i = 0; i < times.length; i++) {
        const t = times[i] as number;
        keys.push({ feature_id: 1, entity_id: "e", at: t - 1 }, { feature_id: 1, entity_id: "e", at: t });
        expected.push(i === 0 ? null : `v${i - 1}`, `v${i}`);
      }
      expect((await db.getAsOf(keys)).map((r) => text(r?.value) ?? null)).toEqual(expected);
      // an instance that has not looked at the partitions yet takes the plain path: same answers
      const cold = open(url);
      expect((await cold.getAsOf(keys)).map((r) => text(r?.value) ?? null)).toEqual(expected);
    });

    test("more keys than one statement takes, and a batch bigger than one write statement", async () => {
      const { db } = await fresh();
      const rows: ValueWrite[] = [];
      for (let i = 0; i < 12_000; i++) rows.push(val(1, `e${i % 6_000}`, T + Math.floor(i / 6_000), `v${i}`));
      const written = await db.writeValues(rows);
      expect(written).toHaveLength(12_000);
      expect(written.every((w, i) => i === 0 || w.seq > (written[i - 1]?.seq ?? 0))).toBe(true);
      const keys: AsOfKey[] = [];
      for (let i = 0; i < 25_000; i++) keys.push({ feature_id: 1, entity_id: `e${i % 6_000}`, at: T + (i % 2) });
      const got = await db.getAsOf(keys);
      for (let i = 0; i < 25_000; i += 997) expect(text(got[i]?.value)).toBe(`v${(i % 6_000) + (i % 2) * 6_000}`);
      const latest = await db.getLatest(keys);
      expect(text(latest[24_999]?.value)).toBe(`v${(24_999 % 6_000) + 6_000}`);
    }, 30_000);

    test("a 1 MiB value round-trips byte for byte", async () => {
      const { db } = await fresh();
      const value = new Uint8Array(1 << 20).map((_, i) => (i * 7) & 0xff);
      await db.writeValues([{ feature_id: 1, entity_id: "big", event_time: T, value, value_hash: hashOf(value) }]);
      const [got] = await db.getLatest([{ feature_id: 1, entity_id: "big" }]);
      expect(Buffer.compare(Buffer.from(got?.value ?? []), Buffer.from(value))).toBe(0);
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
    test("another instance's registrations, keys and values reach watch() within a second", async () => {
      const { db: server, url } = await fresh();
      const other = open(url);
      await other.assertMigrated();
      const seen: ChangeSet[] = [];
      server.watch((c) => seen.push(c));
      await sleep(300); // LISTEN established
      const saw = (kind: keyof ChangeSet) => () => seen.some((c) => c[kind]);

      let t0 = Date.now();
      await other.registerDefinitions("t", () => ({ plan: { inserts: [def("t", "f", 1)], updates: [] }, apply: true, result: null }));
      await waitFor("definitions change", saw("definitions"), 1_500);
      expect(Date.now() - t0).toBeLessThan(1_500);

      t0 = Date.now();
      await other.createKey({ id: "k", tenant: "t", scopes: ["read"], hash: "h", prefix: "p", created_at: 1, expires_at: null, revoked_at: null });
      await waitFor("keys change", saw("keys"), 1_500);

      t0 = Date.now();
      await other.writeValues([val(1, "e", Date.now(), "v")]);
      await waitFor("values change", saw("values"), 1_500);
      expect(Date.now() - t0).toBeLessThan(1_500);
    });

    test("a counter bump without NOTIFY (a missed notification) is still noticed by the poll", async () => {
      const { db: server, url } = await fresh();
      const seen: ChangeSet[] = [];
      server.watch((c) => seen.push(c));
      await sleep(300);
      await raw(url)`UPDATE change_counters SET version = version + 1 WHERE kind = 'keys'`;
      await waitFor("keys change from the poll", () => seen.some((c) => c.keys), 2_500);
    });

    test("an instance's own writes are not reported to itself", async () => {
      const { db } = await fresh();
      const seen: ChangeSet[] = [];
      db.watch((c) => seen.push(c));
      await sleep(300);
      await db.writeValues([val(1, "e", Date.now(), "mine")]);
      await db.createKey({ id: "k", tenant: "t", scopes: ["read"], hash: "h", prefix: "p", created_at: 1, expires_at: null, revoked_at: null });
      await sleep(1_500);
      expect(seen).toEqual([]);
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
