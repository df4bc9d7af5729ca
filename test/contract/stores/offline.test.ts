/**
 * OfflineStore contract: history (identical re-sends stored once, write sequences in input
 * order), the latest value per key, and point-in-time reads behave the same on every backend
 * (see backends.ts). Moved here from the PostgreSQL integration suite.
 */
import { describe, expect, test } from "bun:test";
import type { AsOfKey, ValueWrite } from "../../../src/store/types.ts";
import { databaseFactories } from "./backends.ts";
import { acrossMonths, hashOf, text, val } from "./support.ts";

const T = Date.UTC(2024, 0, 15);
const DAY = 86_400_000;

for (const factory of databaseFactories()) {
  describe(`OfflineStore on ${factory.name}`, () => {
    test("each input row is answered: stored (seqs in input order) or identical to a stored row (its seq), also within one batch", async () => {
      const { db } = await factory.open();
      const first = await db.writeValues([val(1, "u1", T, "a"), val(1, "u2", T, "b"), val(1, "u1", T, "a"), val(2, "u1", T - 5, "c")]);
      expect(first.map((o) => o.status)).toEqual(["stored", "stored", "identical", "stored"]);
      expect(first[2]?.seq).toBe(first[0]?.seq as number);
      const seqs = [first[0], first[1], first[3]].map((o) => o?.seq as number);
      expect([...seqs].sort((x, y) => x - y)).toEqual(seqs);
      expect(new Set(seqs).size).toBe(3);

      // a re-send stores nothing and is answered with the stored rows' seqs
      expect(await db.writeValues([val(1, "u1", T, "a"), val(2, "u1", T - 5, "c")])).toEqual([
        { seq: seqs[0] as number, status: "identical" },
        { seq: seqs[2] as number, status: "identical" },
      ]);
      const again = await db.writeValues([val(1, "u1", T, "a"), val(1, "u1", T, "z")]);
      expect(again.map((o) => o.status)).toEqual(["identical", "stored"]);
      expect(again[1]?.seq).toBeGreaterThan(Math.max(...seqs));
      // both values of (1, u1, T) are history; the later one is current
      expect(text((await db.getAsOf([{ feature_id: 1, entity_id: "u1", at: T }]))[0]?.value)).toBe("z");
    });

    test("the latest value is the greatest (event_time, seq); an older write stays in history only", async () => {
      const { db } = await factory.open();
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

    test("several rows for one key in one batch: the greatest (event_time, seq) is the latest, in any input order", async () => {
      const { db } = await factory.open();
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

    test("one batch mixing re-sends, repeats within the batch, older values and ties: each row answered, the latest is the greatest (event_time, seq)", async () => {
      const { db } = await factory.open();
      const k = { feature_id: 1, entity_id: "k" };
      const [prior] = await db.writeValues([val(1, "k", T, "a")]);
      const w = await db.writeValues([
        val(1, "k", T - DAY, "old"), // older than the latest: history only
        val(1, "k", T, "a"), // identical to the stored row
        val(1, "k", T, "b"), // a tie on event_time with the stored row: wins on seq
        val(1, "k", T, "b"), // repeated within the batch
        val(1, "k", T - DAY, "old"), // repeated within the batch, after other rows
        val(2, "k", T, "a"), // another feature, same entity and value
        val(1, "k", T, "a"), // identical to the stored row again
      ]);
      expect(w.map((o) => o.status)).toEqual(["stored", "identical", "stored", "identical", "identical", "stored", "identical"]);
      expect(w[1]?.seq).toBe(prior?.seq as number);
      expect(w[6]?.seq).toBe(prior?.seq as number);
      expect(w[3]?.seq).toBe(w[2]?.seq as number);
      expect(w[4]?.seq).toBe(w[0]?.seq as number);
      const storedSeqs = [w[0], w[2], w[5]].map((o) => o?.seq as number);
      expect(storedSeqs[0]).toBeGreaterThan(prior?.seq as number);
      expect([...storedSeqs].sort((x, y) => x - y)).toEqual(storedSeqs);
      const [latest, other] = await db.getLatest([k, { feature_id: 2, entity_id: "k" }]);
      expect(text(latest?.value)).toBe("b");
      expect(latest?.seq).toBe(w[2]?.seq as number);
      expect(text(other?.value)).toBe("a");
      expect(text((await db.getAsOf([{ ...k, at: T - 1 }]))[0]?.value)).toBe("old");
      // a re-send of the older "a" and a new value older than the latest leave the latest alone
      const again = await db.writeValues([val(1, "k", T, "a"), val(1, "k", T - 2 * DAY, "older")]);
      expect(again.map((o) => o.status)).toEqual(["identical", "stored"]);
      expect(again[1]?.seq).toBeGreaterThan(Math.max(...storedSeqs));
      expect(await db.getLatest([k])).toEqual([latest ?? null]);
      // a later event time, written in the same batch before an earlier one, is the latest
      const later = await db.writeValues([val(1, "k", T + 5, "c"), val(1, "k", T + 1, "d")]);
      expect(later.map((o) => o.status)).toEqual(["stored", "stored"]);
      const [now] = await db.getLatest([k]);
      expect(text(now?.value)).toBe("c");
      expect(now?.seq).toBe(later[0]?.seq as number);
    });

    test("getLatest / getAsOf answer in key order, with null for never written, nothing after T leaking", async () => {
      const { db } = await factory.open();
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

    test("as-of reads across months, far past and far future", async () => {
      const { db } = await factory.open();
      const { rows, keys, expected } = acrossMonths(Date.now());
      await db.writeValues(rows);
      expect((await db.getAsOf(keys)).map((r) => text(r?.value) ?? null)).toEqual(expected);
    });

    test("more keys than one statement takes, and a batch bigger than one write statement", async () => {
      const { db } = await factory.open();
      const rows: ValueWrite[] = [];
      for (let i = 0; i < 12_000; i++) rows.push(val(1, `e${i % 6_000}`, T + Math.floor(i / 6_000), `v${i}`));
      const written = await db.writeValues(rows);
      expect(written).toHaveLength(12_000);
      expect(written.every((w, i) => i === 0 || w.seq > (written[i - 1]?.seq ?? 0))).toBe(true);
      expect(written.every((w) => w.status === "stored")).toBe(true);
      // the same batch again: every row identical, with the seq it was stored under
      expect(await db.writeValues(rows)).toEqual(written.map((w) => ({ seq: w.seq, status: "identical" })));
      const keys: AsOfKey[] = [];
      for (let i = 0; i < 25_000; i++) keys.push({ feature_id: 1, entity_id: `e${i % 6_000}`, at: T + (i % 2) });
      const got = await db.getAsOf(keys);
      for (let i = 0; i < 25_000; i += 997) expect(text(got[i]?.value)).toBe(`v${(i % 6_000) + (i % 2) * 6_000}`);
      const latest = await db.getLatest(keys);
      expect(text(latest[24_999]?.value)).toBe(`v${(24_999 % 6_000) + 6_000}`);
    }, 60_000);

    test("a large batch (staged and stored in one statement) with awkward entity ids, repeats and re-sends", async () => {
      const { db } = await factory.open();
      const odd = ["tab\there", "new\nline", "carriage\rreturn", "back\\slash\\N", "\\x00", 'quote"d', "ünïcode ✓"];
      const rows: ValueWrite[] = [];
      const entity = (k: number) => `${odd[k % odd.length]}#${k}`;
      // 1,500 entities, 4 values each at T .. T+3
      for (let i = 0; i < 6_000; i++) rows.push(val(1, entity(i % 1_500), T + Math.floor(i / 1_500), `v${i}`));
      rows.push(val(1, entity(0), T, "v0")); // identical to row 0, in the same batch
      const written = await db.writeValues(rows);
      expect(written.slice(0, 6_000).every((w) => w.status === "stored")).toBe(true);
      expect(written.slice(0, 6_000).every((w, i) => i === 0 || w.seq > (written[i - 1]?.seq ?? 0))).toBe(true);
      expect(written[6_000]).toEqual({ seq: written[0]?.seq as number, status: "identical" });
      // the newest per key online, ids byte for byte
      const keys = odd.map((_, j) => ({ feature_id: 1, entity_id: entity(j) }));
      expect((await db.getLatest(keys)).map((r) => text(r?.value))).toEqual(odd.map((_, j) => `v${4_500 + j}`));
      // a re-send of part of it, with one new value: only that one is stored
      const again = await db.writeValues([...rows.slice(0, 2_999), val(1, entity(1), T + 9, "new")]);
      expect(again.slice(0, 2_999)).toEqual(written.slice(0, 2_999).map((w) => ({ seq: w.seq, status: "identical" })));
      expect(again[2_999]?.status).toBe("stored");
    }, 60_000);

    test("a large batch (staged) against stored latest values: newer ones stay, older ones and ties are replaced, new keys added, several rows per key", async () => {
      const { db } = await factory.open();
      // 3,000 keys: k%3 == 0 stored newer than the batch, 1 stored older, 2 stored at the same event time (an earlier seq)
      const before: ValueWrite[] = [];
      for (let k = 0; k < 3_000; k++) before.push(val(1, `e${k}`, k % 3 === 0 ? T + 5 : k % 3 === 1 ? T - 5 : T, `before${k}`));
      await db.writeValues(before);
      const batch: ValueWrite[] = [];
      for (let k = 0; k < 3_000; k++) batch.push(val(1, `e${k}`, T, `batch${k}`));
      // new keys, two rows each (the later one in input order wins a tie; the newer event time wins over order)
      for (let k = 0; k < 500; k++) batch.push(val(2, `n${k}`, T, `n${k}-a`), val(2, `n${k}`, k % 2 === 0 ? T : T - 1, `n${k}-b`));
      const written = await db.writeValues(batch);
      expect(written.every((w) => w.status === "stored")).toBe(true);
      expect(written.every((w, i) => i === 0 || w.seq > (written[i - 1]?.seq ?? 0))).toBe(true);
      const keys = [...Array.from({ length: 3_000 }, (_, k) => ({ feature_id: 1, entity_id: `e${k}` })), ...Array.from({ length: 500 }, (_, k) => ({ feature_id: 2, entity_id: `n${k}` }))];
      const latest = await db.getLatest(keys);
      const expected = [...Array.from({ length: 3_000 }, (_, k) => (k % 3 === 0 ? `before${k}` : `batch${k}`)), ...Array.from({ length: 500 }, (_, k) => (k % 2 === 0 ? `n${k}-b` : `n${k}-a`))];
      expect(latest.map((r) => text(r?.value))).toEqual(expected);
      // the latest row's seq is the one its value was stored under
      expect(latest[1]?.seq).toBe(written[1]?.seq as number);
      expect(latest[3_000]?.seq).toBe(written[3_001]?.seq as number);
      // history keeps both values of a tie, the later one current as of T
      const asOf = await db.getAsOf([{ feature_id: 1, entity_id: "e2", at: T }, { feature_id: 1, entity_id: "e1", at: T - 1 }, { feature_id: 1, entity_id: "e0", at: T }]);
      expect(asOf.map((r) => text(r?.value))).toEqual(["batch2", "before1", "batch0"]);
    }, 60_000);

    test("large batches written at once, sharing new keys: each stores all its rows, the latest is the greatest (event_time, seq)", async () => {
      const { db } = await factory.open();
      const batch = (tag: string, dt: number): ValueWrite[] => Array.from({ length: 4_000 }, (_, k) => val(3, `c${k}`, T + dt + (k % 7), `${tag}${k}`));
      const batches = [batch("a", 0), batch("b", 3), batch("c", 0), batch("d", 3)];
      const written = await Promise.all(batches.map((b) => db.writeValues(b)));
      for (const w of written) expect(w.every((o) => o.status === "stored")).toBe(true);
      const latest = await db.getLatest(Array.from({ length: 4_000 }, (_, k) => ({ feature_id: 3, entity_id: `c${k}` })));
      for (let k = 0; k < 4_000; k++) {
        // b and d are 3 ms newer than a and c; between b and d the greater seq wins
        const [b, d] = [written[1]?.[k]?.seq as number, written[3]?.[k]?.seq as number];
        expect(text(latest[k]?.value)).toBe(b > d ? `b${k}` : `d${k}`);
        expect(latest[k]?.seq).toBe(Math.max(b, d));
      }
    }, 60_000);

    test("a 1 MiB value round-trips byte for byte", async () => {
      const { db } = await factory.open();
      const value = new Uint8Array(1 << 20).map((_, i) => (i * 7) & 0xff);
      await db.writeValues([{ feature_id: 1, entity_id: "big", event_time: T, value, value_hash: hashOf(value) }]);
      const [got] = await db.getLatest([{ feature_id: 1, entity_id: "big" }]);
      expect(Buffer.compare(Buffer.from(got?.value ?? []), Buffer.from(value))).toBe(0);
    });
  });
}
