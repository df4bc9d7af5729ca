/**
 * The SQLite change feed names the tenant whose definitions changed (as PostgreSQL's
 * notification does), so other processes reload that tenant only; when it cannot tell (versions
 * without a record: pruned, or bumped by an older binary) it names none, and every tenant is
 * reloaded.
 */
import { Database as Sqlite } from "bun:sqlite";
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteDatabase } from "../../../src/store/sqlite/database.ts";
import type { ChangeSet } from "../../../src/store/types.ts";
import { def, val } from "./support.ts";

const dirs: string[] = [];
const open: SqliteDatabase[] = [];
afterAll(async () => {
  for (const db of open) await db.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Two instances on one file (two processes), both migrated; `seen` collects what the first one's feed reports. */
async function pair() {
  const dir = mkdtempSync(join(tmpdir(), "fs-sqlite-feed-"));
  dirs.push(dir);
  // a poll interval longer than any test: the tests poll themselves
  const server = new SqliteDatabase({ dataDir: dir, pollIntervalMs: 60_000 });
  const other = new SqliteDatabase({ dataDir: dir, pollIntervalMs: 60_000 });
  open.push(server, other);
  await server.migrate();
  await other.migrate();
  const seen: ChangeSet[] = [];
  server.watch((c) => seen.push(c));
  const register = (db: SqliteDatabase, tenant: string, name: string) =>
    db.registerDefinitions(tenant, () => ({ plan: { inserts: [def(tenant, name, 1)], updates: [] }, apply: true, result: null }));
  return { dir, server, other, seen, register };
}

describe("SQLite change feed: definitions changes name their tenant", () => {
  test("another process's registrations are reported with exactly the tenants they changed", async () => {
    const { server, other, seen, register } = await pair();
    await register(other, "acme", "f");
    server.poll();
    expect(seen).toEqual([{ definitions: true, keys: false, values: false, tenants: ["acme"] }]);
    await register(other, "beta", "f");
    await register(other, "acme", "g");
    await other.registerCatalog("gamma", () => ({ plan: { inserts: [def("gamma", "f", 1)], updates: [], groupInserts: [], groupUpdates: [] }, apply: true, result: null }));
    server.poll();
    expect(seen[1]?.tenants?.toSorted()).toEqual(["acme", "beta", "gamma"]);
  });

  test("a process's own registrations are not reported to it; another's interleaved one is, by tenant", async () => {
    const { server, other, seen, register } = await pair();
    await register(server, "mine", "f");
    server.poll();
    expect(seen).toEqual([]);
    await register(other, "theirs", "f");
    await register(server, "mine", "g"); // its bump notices the foreign version before any poll
    await Bun.sleep(0);
    expect(seen).toEqual([{ definitions: true, keys: false, values: false, tenants: ["theirs"] }]);
  });

  test("a version without a record (an older binary's bump) names no tenant: every tenant is reloaded", async () => {
    const { dir, server, seen, register, other } = await pair();
    await register(other, "acme", "f");
    const raw = new Sqlite(join(dir, "feature-store.db"));
    raw.run("UPDATE change_counters SET version = version + 1 WHERE kind = 'definitions'");
    raw.close();
    server.poll();
    expect(seen).toEqual([{ definitions: true, keys: false, values: false }]);
  });
});

describe("SQLite change feed: a poll that cannot read the counters", () => {
  test("a failed counter read (busy) is retried at the next poll: the change is reported then, not missed", async () => {
    const { server, other, seen, register } = await pair();
    await register(other, "acme", "f");
    // the next read of the counters fails as a busy file does (SQLITE_BUSY past the busy
    // timeout); the data version itself was read
    const statements = (server as unknown as { statements: { counters: { all(): unknown[] } } }).statements;
    const counters = statements.counters;
    let failed = 0;
    statements.counters = {
      all() {
        statements.counters = counters;
        failed++;
        throw Object.assign(new Error("database is locked"), { code: "SQLITE_BUSY" });
      },
    };
    server.pollNow(); // what the poll timer calls: the failure is left to the next poll
    expect(failed).toBe(1);
    expect(seen).toEqual([]);
    server.pollNow(); // the look before the next online lookup: the header it saw is not taken as seen
    expect(seen).toEqual([{ definitions: true, keys: false, values: false, tenants: ["acme"] }]);
  });
});

describe("SQLite change feed: a sibling connection of the same process (a bulk-lane thread)", () => {
  test("its commits are never reported, even when polled before its receipts are adopted; another process's are", async () => {
    const { dir, server, other, seen, register } = await pair();
    await register(server, "acme", "f"); // feature version 1
    server.poll();
    // opened with the server's ledger, as the lane's worker threads are
    const sibling = new SqliteDatabase({ dataDir: dir, pollIntervalMs: 60_000, ownChangeLedger: server.ownChangeLedger });
    open.push(sibling);
    await sibling.assertMigrated();
    await sibling.writeValues([val(1, "u1", 1000, "a")]);
    await register(sibling, "acme", "g");
    // the serving thread reads before the "written" message with the receipts arrives
    server.poll();
    expect(seen).toEqual([]);
    // the receipts arriving later change nothing
    server.adoptOwnChanges("values", sibling.takeOwnChanges("values"));
    server.poll();
    expect(seen).toEqual([]);
    // another process's write is still reported, also when interleaved with the sibling's
    await other.writeValues([val(1, "u2", 1000, "b")]);
    await sibling.writeValues([val(1, "u3", 1000, "c")]);
    server.poll();
    expect(seen).toEqual([{ definitions: false, keys: false, values: true, entities: [{ tenant: "acme", entity_type: "user", entity_id: "u2" }] }]);
  });
});

describe("SQLite change feed: values changes name their entities", () => {
  const user = (entity_id: string, tenant = "acme") => ({ tenant, entity_type: "user", entity_id });
  const sorted = (c: ChangeSet | undefined) => c?.entities?.map((e) => `${e.tenant}/${e.entity_type}/${e.entity_id}`).toSorted();

  test("another process's writes are reported with exactly the entities they stored, over several writes", async () => {
    const { server, other, seen, register } = await pair();
    await register(server, "acme", "f"); // feature 1, entity type user
    await register(server, "beta", "g"); // feature 2
    await register(server, "beta", "h"); // feature 3
    await other.writeValues([val(1, "u1", 1000, "a"), val(1, "u2", 1000, "b"), val(1, "u1", 2000, "c")]);
    server.poll();
    expect(seen.length).toBe(1);
    expect(sorted(seen[0])).toEqual(["acme/user/u1", "acme/user/u2"]);
    await other.writeValues([val(2, "u1", 1000, "a")]);
    await other.writeValues([val(3, "u1", 1000, "a"), val(2, "u9", 1000, "a")]);
    server.poll();
    expect(seen.length).toBe(2);
    expect(seen[1]).toMatchObject({ definitions: false, keys: false, values: true });
    expect(sorted(seen[1])).toEqual(["beta/user/u1", "beta/user/u1", "beta/user/u9"]);
    // a re-send stores nothing: no bump, nothing reported
    await other.writeValues([val(2, "u1", 1000, "a")]);
    server.poll();
    expect(seen.length).toBe(2);
  });

  test("a process's own write interleaved after another's reports the other's entities only", async () => {
    const { server, other, seen, register } = await pair();
    await register(server, "acme", "f");
    server.poll();
    await other.writeValues([val(1, "theirs", 1000, "a")]);
    await server.writeValues([val(1, "mine", 1000, "a")]); // its bump notices the foreign version
    await Bun.sleep(0);
    expect(seen).toEqual([{ definitions: false, keys: false, values: true, entities: [user("theirs")] }]);
    server.poll();
    expect(seen.length).toBe(1);
  });

  test("a write of more entities than it names, a feature without a definition, or a version without a record: everything", async () => {
    const { dir, server, other, seen, register } = await pair();
    await register(server, "acme", "f");
    server.poll();
    await other.writeValues(Array.from({ length: 300 }, (_, i) => val(1, `u${i}`, 1000, "a")));
    server.poll();
    expect(seen).toEqual([{ definitions: false, keys: false, values: true }]);
    await other.writeValues([val(1, "u1", 2000, "a"), val(99, "u1", 2000, "a")]);
    server.poll();
    expect(seen[1]).toEqual({ definitions: false, keys: false, values: true });
    // an older binary's write bumps the counter without a record
    await other.writeValues([val(1, "u1", 3000, "a")]);
    const raw = new Sqlite(join(dir, "feature-store.db"));
    raw.run("UPDATE change_counters SET version = version + 1 WHERE kind = 'values'");
    raw.close();
    server.poll();
    expect(seen[2]).toEqual({ definitions: false, keys: false, values: true });
    // one with a record again names its entities
    await other.writeValues([val(1, "u1", 4000, "a")]);
    server.poll();
    expect(seen[3]).toEqual({ definitions: false, keys: false, values: true, entities: [user("u1")] });
  });

  test("records that cannot be read now (busy) report everything, never nothing", async () => {
    const { server, other, seen, register } = await pair();
    await register(server, "acme", "f");
    server.poll();
    await other.writeValues([val(1, "u1", 1000, "a")]);
    const statements = (server as unknown as { statements: { valueChanges: { values(...a: unknown[]): unknown[] } } }).statements;
    const real = statements.valueChanges;
    statements.valueChanges = {
      values() {
        statements.valueChanges = real;
        throw Object.assign(new Error("database is locked"), { code: "SQLITE_BUSY" });
      },
    };
    server.poll();
    expect(seen).toEqual([{ definitions: false, keys: false, values: true }]);
  });

  test("a process further behind than the records kept forgets everything; the records are pruned", async () => {
    const { dir, server, other, seen, register } = await pair();
    await register(server, "acme", "f");
    server.poll();
    for (let i = 0; i < 1030; i++) await other.writeValues([val(1, "u1", 1000 + i, "a")]);
    server.poll();
    expect(seen).toEqual([{ definitions: false, keys: false, values: true }]);
    const raw = new Sqlite(join(dir, "feature-store.db"));
    const { n } = raw.query("SELECT count(*) AS n FROM value_changes").get() as { n: number };
    raw.close();
    expect(n).toBe(1024);
  });
});

describe("SQLite change feed: the look before each online lookup (pollNow)", () => {
  test("one data_version read per look; any process's commit (ours, another's, a plain SQLite connection's) is seen at the next look", async () => {
    const { dir, server, other, seen, register } = await pair();
    await register(server, "acme", "f");
    let statements = 0;
    const s = server as unknown as { readDataVersion(): number };
    const read = s.readDataVersion.bind(server);
    s.readDataVersion = () => {
      statements++;
      return read();
    };
    server.pollNow();
    const base = statements;
    for (let i = 0; i < 5; i++) server.pollNow();
    expect(statements).toBe(base); // nothing committed: the -shm header unchanged, no statement at all, nothing reported
    expect(seen).toEqual([]);
    await other.writeValues([val(1, "u1", 1000, "a")]);
    server.pollNow();
    expect(seen).toEqual([{ definitions: false, keys: false, values: true, entities: [{ tenant: "acme", entity_type: "user", entity_id: "u1" }] }]);
    server.pollNow();
    expect(seen.length).toBe(1);
    // a commit outside this code (the sqlite3 shell, an older binary) is seen as well
    const raw = new Sqlite(join(dir, "feature-store.db"));
    raw.run("UPDATE change_counters SET version = version + 1 WHERE kind = 'keys'");
    raw.close();
    server.pollNow();
    expect(seen[1]).toEqual({ definitions: false, keys: true, values: false });
    // this process's own commit: nothing reported
    await server.writeValues([val(1, "u2", 1000, "a")]);
    server.pollNow();
    expect(seen.length).toBe(2);
  });
});
