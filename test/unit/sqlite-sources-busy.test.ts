/**
 * The embedded source store (materialize jobs' rows) reports a database it cannot write now
 * (locked past the busy timeout by another connection) as StoreUnavailable, a 503 over HTTP,
 * like every other store call: not a raw SQLiteError, a 500.
 */
import { expect, test } from "bun:test";
import { Database as Sqlite } from "bun:sqlite";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { StoreUnavailable } from "../../src/store/errors.ts";
import { SqliteDatabase } from "../../src/store/sqlite/database.ts";

test("a locked database is StoreUnavailable for the source store's writes; they work once it is free", async () => {
  const dir = mkdtempSync(join(tmpdir(), "fs-sources-busy-"));
  const db = new SqliteDatabase({ dataDir: dir });
  try {
    await db.migrate();
    const other = new Sqlite(join(dir, "feature-store.db"));
    other.exec("BEGIN IMMEDIATE");
    const err = await db.sources.interruptStaleJobs(0, 1).catch((e: unknown) => e);
    other.exec("COMMIT");
    other.close();
    expect(err).toBeInstanceOf(StoreUnavailable);
    expect(await db.sources.interruptStaleJobs(0, 1)).toBe(0);
  } finally {
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}, 30_000);
