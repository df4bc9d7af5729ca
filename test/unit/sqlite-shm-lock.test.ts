/**
 * The look before each online lookup (SqliteDatabase.pollNow) never opens and closes SQLite's
 * `-shm` itself: a close drops every POSIX lock the process holds on the file, SQLite's own, and
 * the next process to open the database then resets the `-shm` under this one
 * (https://sqlite.org/howtocorrupt.html, 2.2).
 */
import { expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteDatabase } from "../../src/store/sqlite/database.ts";

/** POSIX locks this process holds on the file with inode `ino` (/proc/locks). */
function locksOn(ino: number): number {
  return readFileSync("/proc/locks", "utf8")
    .split("\n")
    .filter((l) => /\bPOSIX\b/.test(l) && l.split(/\s+/)[4] === String(process.pid) && l.split(/\s+/)[5]?.endsWith(`:${ino}`)).length;
}

test.skipIf(!existsSync("/proc/locks"))("pollNow keeps SQLite's lock on the -shm; another process's commit is seen and leaves the -shm alone", async () => {
  const dir = mkdtempSync(join(tmpdir(), "fs-shm-lock-"));
  const db = new SqliteDatabase({ dataDir: dir });
  try {
    await db.migrate();
    const shm = join(dir, "feature-store.db-shm");
    const ino = statSync(shm).ino;
    expect(locksOn(ino)).toBeGreaterThan(0);
    for (let i = 0; i < 3; i++) db.pollNow();
    expect(locksOn(ino)).toBeGreaterThan(0);
    const child = Bun.spawnSync([process.execPath, "-e", `const { Database } = require("bun:sqlite"); const d = new Database(${JSON.stringify(join(dir, "feature-store.db"))}); d.exec("PRAGMA busy_timeout = 5000"); d.run("UPDATE change_counters SET version = version + 1 WHERE kind = 'keys'"); d.close();`]);
    expect(child.exitCode).toBe(0);
    expect(statSync(shm).ino).toBe(ino);
    expect(statSync(shm).size).toBeGreaterThanOrEqual(32_768);
    expect(locksOn(ino)).toBeGreaterThan(0);
    let seen = 0;
    db.watch(() => seen++);
    db.pollNow();
    expect(seen).toBe(1);
  } finally {
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
