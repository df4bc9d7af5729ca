/**
 * Migration 0006 (value history clustered on its identity) keeps every stored value of a
 * database written under 0001-0005: same rows, same sequences, reads answer as before, an
 * identical re-send is still recognised, and a new value gets a sequence after every one ever
 * assigned (also one whose row is gone: AUTOINCREMENT's record is carried over). Migration
 * 0007 (latest values read from the history) answers every latest value the dropped table held.
 */
import { expect, test } from "bun:test";
import { Database as Sqlite } from "bun:sqlite";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sqliteMigrations } from "../../migrations/index.ts";
import { migrationChecksum } from "../../src/store/migrations.ts";
import { SqliteDatabase } from "../../src/store/sqlite/database.ts";

const bytes = (...b: number[]) => new Uint8Array(b);

test("0006 moves the history into the clustered table with its sequences; reads, re-sends and new sequences after it", async () => {
  const dir = mkdtempSync(join(tmpdir(), "fs-values-0006-"));
  try {
    // a database as a binary before 0006 left it
    const raw = new Sqlite(join(dir, "feature-store.db"), { create: true, strict: true });
    raw.exec("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, checksum TEXT NOT NULL, applied_at INTEGER NOT NULL)");
    const before = sqliteMigrations.filter((m) => m.name < "0006");
    expect(before.map((m) => m.name)).toEqual(["0001_init", "0002_feature_groups", "0003_sources", "0004_definition_changes", "0005_value_changes"]);
    for (const m of before) {
      raw.exec(m.sql);
      raw.query("INSERT INTO schema_migrations (name, checksum, applied_at) VALUES (?, ?, ?)").run(m.name, migrationChecksum(m), 0);
    }
    const ins = raw.prepare("INSERT INTO feature_values (feature_id, entity_id, event_time, value_hash, value) VALUES (?, ?, ?, ?, ?) RETURNING seq");
    const seqs: number[] = [];
    const seq = (i: number) => seqs[i] as number;
    // two values at one event time (a correction: the later seq wins), two entities, two features
    seqs.push((ins.get(1, "u1", 1000, bytes(1), bytes(10)) as { seq: number }).seq);
    seqs.push((ins.get(1, "u1", 2000, bytes(2), bytes(20)) as { seq: number }).seq);
    seqs.push((ins.get(1, "u1", 2000, bytes(3), bytes(21)) as { seq: number }).seq);
    seqs.push((ins.get(2, "u1", 1500, bytes(4), bytes(40)) as { seq: number }).seq);
    seqs.push((ins.get(1, "u2", 500, bytes(5), bytes(50)) as { seq: number }).seq);
    // the greatest sequence ever assigned belongs to a row that no longer exists
    const gone = (ins.get(3, "u9", 1, bytes(9), bytes(90)) as { seq: number }).seq;
    raw.exec(`DELETE FROM feature_values WHERE seq = ${gone}`);
    const rowsBefore = raw.query("SELECT feature_id, entity_id, event_time, value_hash, seq, value FROM feature_values ORDER BY seq").all();
    raw.close();

    const db = new SqliteDatabase({ dataDir: dir });
    try {
      expect(await db.migrate()).toEqual(["0006_values_clustered", "0007_online_from_history"]);
      const check = new Sqlite(join(dir, "feature-store.db"), { readonly: true, strict: true });
      expect(check.query("SELECT feature_id, entity_id, event_time, value_hash, seq, value FROM feature_values ORDER BY seq").all()).toEqual(rowsBefore);
      // no index beside the table's own key
      expect(check.query("SELECT name FROM pragma_index_list('feature_values') WHERE origin <> 'pk'").all()).toEqual([]);
      expect(check.query("SELECT count(*) AS n FROM sqlite_schema WHERE name LIKE 'feature_values%'").get()).toEqual({ n: 1 });
      check.close();

      // point-in-time: the newest at or before `at`, ties by seq
      const asOf = await db.getAsOf([
        { feature_id: 1, entity_id: "u1", at: 2500 },
        { feature_id: 1, entity_id: "u1", at: 1999 },
        { feature_id: 1, entity_id: "u1", at: 999 },
        { feature_id: 2, entity_id: "u1", at: 9999 },
        { feature_id: 1, entity_id: "u2", at: 500 },
      ]);
      expect(asOf).toEqual([
        { event_time: 2000, seq: seqs[2] as number, value: bytes(21) },
        { event_time: 1000, seq: seqs[0] as number, value: bytes(10) },
        null,
        { event_time: 1500, seq: seqs[3] as number, value: bytes(40) },
        { event_time: 500, seq: seqs[4] as number, value: bytes(50) },
      ]);
      const history = await db.getHistory([1, 2], ["u1"], 5000, 100);
      expect(history.map((h) => [h[0], h[2], h[3]])).toEqual([
        [1, 1000, seq(0)],
        [1, 2000, seq(1)],
        [1, 2000, seq(2)],
        [2, 1500, seq(3)],
      ]);

      // an identical re-send of a migrated row is recognised; a new value gets a sequence past `gone`
      const out = await db.writeValues([
        { feature_id: 1, entity_id: "u1", event_time: 1000, value_hash: bytes(1), value: bytes(10) },
        { feature_id: 1, entity_id: "u1", event_time: 3000, value_hash: bytes(6), value: bytes(60) },
      ]);
      expect(out[0]).toEqual({ seq: seqs[0] as number, status: "identical" });
      expect(out[1]?.status).toBe("stored");
      expect(out[1]?.seq).toBeGreaterThan(gone);
      const next = await db.writeValues([{ feature_id: 1, entity_id: "u3", event_time: 1, value_hash: bytes(7), value: bytes(70) }]);
      expect(next[0]?.seq).toBeGreaterThan(out[1]?.seq as number);
      expect(await db.getLatest([{ feature_id: 1, entity_id: "u1" }])).toEqual([{ event_time: 3000, seq: out[1]?.seq as number, value: bytes(60) }]);
    } finally {
      await db.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 30_000);

test("0007 drops the latest-value table: every latest value it held is answered from the history, and the view of its name lists the same rows", async () => {
  const dir = mkdtempSync(join(tmpdir(), "fs-values-0007-"));
  try {
    // a database as a binary before 0007 left it: history, and the latest values its writer kept
    const raw = new Sqlite(join(dir, "feature-store.db"), { create: true, strict: true });
    raw.exec("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, checksum TEXT NOT NULL, applied_at INTEGER NOT NULL)");
    const before = sqliteMigrations.filter((m) => m.name < "0007");
    expect(before.map((m) => m.name).at(-1)).toBe("0006_values_clustered");
    for (const m of before) {
      raw.exec(m.sql);
      raw.query("INSERT INTO schema_migrations (name, checksum, applied_at) VALUES (?, ?, ?)").run(m.name, migrationChecksum(m), 0);
    }
    const history: [number, string, number, Uint8Array, number, Uint8Array][] = [
      [1, "u1", 1000, bytes(1), 1, bytes(10)],
      [1, "u1", 2000, bytes(9), 2, bytes(20)], // a tie on the event time: the greater seq (3) wins, though its hash sorts first
      [1, "u1", 2000, bytes(3), 3, bytes(21)],
      [1, "u1", 1500, bytes(4), 4, bytes(15)], // written later, older event time: history only
      [2, "u1", 1500, bytes(5), 5, bytes(40)],
      [1, "u2", 500, bytes(6), 6, bytes(50)],
    ];
    const ins = raw.prepare("INSERT INTO feature_values (feature_id, entity_id, event_time, value_hash, seq, value) VALUES (?, ?, ?, ?, ?, ?)");
    for (const h of history) ins.run(...h);
    raw.exec("UPDATE value_sequence SET next = 7");
    const latestRows = [
      { feature_id: 1, entity_id: "u1", event_time: 2000, seq: 3, value: bytes(21) },
      { feature_id: 1, entity_id: "u2", event_time: 500, seq: 6, value: bytes(50) },
      { feature_id: 2, entity_id: "u1", event_time: 1500, seq: 5, value: bytes(40) },
    ];
    const up = raw.prepare("INSERT INTO online_values (feature_id, entity_id, event_time, seq, value) VALUES (?, ?, ?, ?, ?)");
    for (const r of latestRows) up.run(r.feature_id, r.entity_id, r.event_time, r.seq, r.value);
    raw.close();

    const db = new SqliteDatabase({ dataDir: dir });
    try {
      expect(await db.migrate()).toEqual(["0007_online_from_history"]);
      const keys = latestRows.map((r) => ({ feature_id: r.feature_id, entity_id: r.entity_id }));
      expect(await db.getLatest([...keys, { feature_id: 3, entity_id: "u1" }])).toEqual([
        ...latestRows.map((r) => ({ event_time: r.event_time, seq: r.seq, value: r.value })),
        null,
      ]);
      const check = new Sqlite(join(dir, "feature-store.db"), { readonly: true, strict: true });
      expect(check.query("SELECT type FROM sqlite_schema WHERE name = 'online_values'").all()).toEqual([{ type: "view" }]);
      expect(check.query("SELECT feature_id, entity_id, event_time, seq, value FROM online_values ORDER BY feature_id, entity_id").all()).toEqual(latestRows);
      check.close();
      // a new value at the same event time as the latest wins on its seq; an older one does not
      const out = await db.writeValues([
        { feature_id: 1, entity_id: "u1", event_time: 2000, value_hash: bytes(0), value: bytes(22) },
        { feature_id: 1, entity_id: "u2", event_time: 400, value_hash: bytes(7), value: bytes(49) },
      ]);
      expect(out.map((o) => o.status)).toEqual(["stored", "stored"]);
      expect(await db.getLatest(keys.slice(0, 2))).toEqual([
        { event_time: 2000, seq: out[0]?.seq as number, value: bytes(22) },
        { event_time: 500, seq: 6, value: bytes(50) },
      ]);
    } finally {
      await db.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 30_000);
