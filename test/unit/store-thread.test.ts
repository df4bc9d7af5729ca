/**
 * materialize's store thread (src/sources/store-thread-client.ts): rows cross packed and come
 * back whole; writes and positions run on the thread's own connection with the same outcomes as
 * the main connection's; a locked file is StoreUnavailable (a 503, a resumable CLI error), not
 * another error.
 */
import { expect, test } from "bun:test";
import { Database as Sqlite } from "bun:sqlite";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { packRows, StoreThread, unpackColumns } from "../../src/sources/store-thread-client.ts";
import { columnsOf, keyOrder } from "../../src/store/sqlite/value-writer.ts";
import { StoreUnavailable } from "../../src/store/errors.ts";
import { SqliteDatabase } from "../../src/store/sqlite/database.ts";
import type { ValueWrite } from "../../src/store/types.ts";

const row = (feature_id: number, entity_id: string, event_time: number, value: number[], hash: number): ValueWrite => ({
  feature_id, entity_id, event_time, value: new Uint8Array(value), value_hash: new Uint8Array(16).fill(hash),
});

const plain = (c: ReturnType<typeof columnsOf>) => ({
  n: c.n, featureIds: Array.from(c.featureIds), entityIds: [...c.entityIds], eventTimes: Array.from(c.eventTimes),
  values: c.values.map((v) => Array.from(v)), hashes: c.hashes.map((v) => Array.from(v)),
});

test("packed rows unpack to the same columns (unicode ids, values of any length), with their key order", () => {
  const rows = [row(1, "ü-ß-😀", 1, [1, 2, 3], 1), row(7, "a", -5, [], 2), row(2 ** 31 - 1, "x".repeat(300), 253_402_300_799_999, Array.from({ length: 5000 }, (_, i) => i & 255), 3), row(1, "b", 9, [4], 4)];
  const p = packRows(rows);
  expect(plain(unpackColumns(p))).toEqual(plain(columnsOf(rows)));
  expect(Array.from(p.order)).toEqual([3, 0, 1, 2]);
  expect(plain(unpackColumns(packRows([])))).toEqual(plain(columnsOf([])));
});

test("key order: feature, then entity (code unit order), then event time; ties in input order", () => {
  const rows = [row(2, "a", 5, [1], 1), row(1, "b", 5, [1], 1), row(1, "a", 7, [1], 1), row(1, "a", 5, [2], 2), row(1, "a", 5, [1], 1), row(1, "B", 9, [1], 1)];
  expect(Array.from(keyOrder(columnsOf(rows)))).toEqual([5, 3, 4, 2, 1, 0]);
});

test("writes and positions through the thread: same outcomes as the main connection, visible to it; a locked file is StoreUnavailable", async () => {
  const dir = mkdtempSync(join(tmpdir(), "fs-store-thread-"));
  const db = new SqliteDatabase({ dataDir: dir });
  try {
    await db.migrate();
    const thread = await StoreThread.open({ dataDir: dir, ownChangeLedger: db.ownChangeLedger, cacheMib: 2, walPages: 1000 });
    try {
      const rows = [row(1, "u1", 1000, [10], 1), row(1, "u1", 2000, [20], 2), row(1, "u1", 1000, [10], 1), row(2, "u2", 5, [5], 3)];
      const first = await thread.writeValues(rows);
      expect(first.map((o) => o.status)).toEqual(["stored", "stored", "identical", "stored"]);
      expect(first[2]?.seq).toBe(first[0]?.seq as number);
      // the main connection sees them, and answers a re-send with the same sequences
      expect(await db.getLatest([{ feature_id: 1, entity_id: "u1" }])).toEqual([{ event_time: 2000, seq: first[1]?.seq as number, value: new Uint8Array([20]) }]);
      expect(await db.writeValues(rows)).toEqual(rows.map((_, i) => ({ seq: first[i]?.seq as number, status: "identical" })));
      await thread.putSourceState("t", "src", { run: { position: 42 } }, 1);
      expect((await db.sources.getSourceState("t", "src"))?.run).toEqual({ position: 42 });

      const other = new Sqlite(join(dir, "feature-store.db"));
      other.exec("PRAGMA busy_timeout = 0");
      other.exec("BEGIN IMMEDIATE");
      const err = await thread.writeValues([row(3, "u3", 1, [1], 4)]).catch((e: unknown) => e);
      other.exec("COMMIT");
      other.close();
      expect(err).toBeInstanceOf(StoreUnavailable);
      // and the thread works on afterwards
      expect((await thread.writeValues([row(3, "u3", 1, [1], 4)]))[0]?.status).toBe("stored");
    } finally {
      await thread.close();
    }
  } finally {
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
