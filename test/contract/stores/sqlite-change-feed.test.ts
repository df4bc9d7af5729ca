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
    server.poll();
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
    expect(seen).toEqual([{ definitions: false, keys: false, values: true }]);
  });
});
