/**
 * OnlineStore contract: the compare-and-set on (event_time, seq), negative entries, isolation
 * by tenant and entity type, and `clear` behave the same on every backend (see backends.ts).
 * The generic cases moved here from the Redis integration suite.
 */
import { describe, expect, test } from "bun:test";
import type { StoredRow, ValueKey } from "../../../src/store/types.ts";
import { onlineFactories } from "./backends.ts";

const bytes = (...b: number[]): Uint8Array => new Uint8Array(b);
const row = (event_time: number, seq: number, value: Uint8Array = bytes(seq & 0xff)): StoredRow => ({ event_time, seq, value });
const key = (feature_id: number, entity_id: string): ValueKey => ({ feature_id, entity_id });

for (const factory of onlineFactories()) {
  describe(`OnlineStore on ${factory.name}`, () => {
    test("compare-and-set keeps the newest (event_time, seq); older never replaces newer", async () => {
      const c = await factory.open();
      const k = key(1, "user_1");
      await c.putMany("t", "user", [{ key: k, value: row(100, 5) }]);
      await c.putMany("t", "user", [{ key: k, value: row(50, 9) }]); // older event time, later seq
      expect(await c.getMany("t", "user", [k])).toEqual([row(100, 5)]);
      await c.putMany("t", "user", [{ key: k, value: row(100, 4) }]); // tie on time, lower seq
      expect(await c.getMany("t", "user", [k])).toEqual([row(100, 5)]);
      await c.putMany("t", "user", [{ key: k, value: row(100, 6, bytes(9, 9)) }]); // tie, higher seq
      expect(await c.getMany("t", "user", [k])).toEqual([row(100, 6, bytes(9, 9))]);
      await c.putMany("t", "user", [{ key: k, value: row(200, 1) }]);
      expect(await c.getMany("t", "user", [k])).toEqual([row(200, 1)]);
      // several offers for one field in one call, in any order: the newest wins
      const k2 = key(2, "user_1");
      await c.putMany("t", "user", [
        { key: k2, value: row(300, 2) },
        { key: k2, value: row(400, 1) },
        { key: k2, value: row(100, 9) },
      ]);
      expect(await c.getMany("t", "user", [k2])).toEqual([row(400, 1)]);
      // negative event times (before 1970) compare too
      const k3 = key(3, "user_1");
      await c.putMany("t", "user", [{ key: k3, value: row(-5000, 1) }]);
      await c.putMany("t", "user", [{ key: k3, value: row(-9000, 7) }]);
      expect(await c.getMany("t", "user", [k3])).toEqual([row(-5000, 1)]);
    });

    test("one call for thousands of entities (a bulk load's chunk): each field ends at its newest offer, older stored values kept", async () => {
      const c = await factory.open();
      const n = 3_000;
      // stored before: even entities hold a newer value of feature 1 than the call offers
      await c.putMany("t", "user", Array.from({ length: n / 2 }, (_, i) => ({ key: key(1, `e${2 * i}`), value: row(500, 1) })));
      const entries: { key: ValueKey; value: StoredRow | null }[] = [];
      for (let i = 0; i < n; i++) {
        const id = `e${i}`;
        entries.push({ key: key(1, id), value: row(100 + (i % 7), 10) });
        entries.push({ key: key(2, id), value: null }); // a negative entry, then a value: the value stays
        entries.push({ key: key(2, id), value: row(50, i) });
        entries.push({ key: key(1, id), value: row(100 + (i % 7), 11) }); // same time, later seq
        entries.push({ key: key(3, id), value: null }); // only a negative entry
      }
      entries.reverse(); // the order of offers within a call does not matter
      await c.putMany("t", "user", entries);
      const ids = [0, 1, 2, 255, 256, 257, 1999, 2999].map((i) => `e${i}`);
      const got = await c.getMany("t", "user", ids.flatMap((id) => [key(1, id), key(2, id), key(3, id)]));
      const want = ids.flatMap((id) => {
        const i = Number(id.slice(1));
        return [i % 2 === 0 ? row(500, 1) : row(100 + (i % 7), 11), row(50, i), null];
      });
      expect(got).toEqual(want);
    });

    test("concurrent writers in any order converge on the newest value", async () => {
      const c = await factory.open();
      const offers = Array.from({ length: 200 }, (_, i) => row(1_700_000_000_000 + (i % 37), i));
      offers.sort(() => Math.random() - 0.5);
      const ks = [key(1, "a"), key(2, "a"), key(1, "b")];
      await Promise.all(offers.map((v) => c.putMany("t", "user", ks.map((k) => ({ key: k, value: v })))));
      const best = offers.reduce((a, b) => (b.event_time > a.event_time || (b.event_time === a.event_time && b.seq > a.seq) ? b : a));
      expect(await c.getMany("t", "user", ks)).toEqual([best, best, best]);
    });

    test("negative entries: set only where absent, replaced by any value", async () => {
      const c = await factory.open();
      const [a, b] = [key(1, "e"), key(2, "e")];
      expect(await c.getMany("t", "user", [a, b])).toEqual([undefined, undefined]);
      await c.putMany("t", "user", [
        { key: a, value: null },
        { key: b, value: row(10, 1) },
      ]);
      expect(await c.getMany("t", "user", [a, b])).toEqual([null, row(10, 1)]);
      await c.putMany("t", "user", [{ key: b, value: null }]); // never hides a value
      expect(await c.getMany("t", "user", [b])).toEqual([row(10, 1)]);
      await c.putMany("t", "user", [{ key: a, value: row(-1, 0, bytes()) }]); // any value replaces it
      expect(await c.getMany("t", "user", [a])).toEqual([row(-1, 0, bytes())]);
    });

    test("entries are isolated by tenant and entity type; answers follow key order", async () => {
      const c = await factory.open();
      await c.putMany("t1", "user", [{ key: key(1, "e"), value: row(10, 1) }]);
      await c.putMany("t1", "order", [{ key: key(1, "e"), value: row(20, 2) }]);
      expect(await c.getMany("t2", "user", [key(1, "e")])).toEqual([undefined]);
      expect(await c.getMany("t1", "order", [key(1, "e"), key(9, "e"), key(1, "e")])).toEqual([row(20, 2), undefined, row(20, 2)]);
      expect(await c.getMany("t1", "user", [key(1, "e")])).toEqual([row(10, 1)]);
      expect(await c.getMany("t1", "user", [])).toEqual([]);
    });

    test("clear forgets everything; the store works on afterwards", async () => {
      const c = await factory.open();
      await c.putMany("t", "user", [{ key: key(1, "e"), value: row(10, 1) }, { key: key(2, "e"), value: null }]);
      await c.ping();
      await c.clear();
      expect(await c.getMany("t", "user", [key(1, "e"), key(2, "e")])).toEqual([undefined, undefined]);
      await c.putMany("t", "user", [{ key: key(1, "e"), value: row(5, 1) }]);
      expect(await c.getMany("t", "user", [key(1, "e")])).toEqual([row(5, 1)]);
    });
  });
}
