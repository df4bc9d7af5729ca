/**
 * The in-process online store's compare-and-set on (event_time, seq): a value replaces the held
 * one only when it is newer; a negative entry (`null`) only fills a gap and yields to any value.
 */
import { describe, expect, test } from "bun:test";
import { HeldRow } from "../../src/store/held-row.ts";
import { InProcessCache } from "../../src/store/memory/online-cache.ts";
import type { CachedValue, StoredRow, ValueKey } from "../../src/store/types.ts";

const row = (event_time: number, seq: number, byte: number): StoredRow => ({ event_time, seq, value: new Uint8Array([byte]) });
const key = (feature_id: number, entity_id = "e1"): ValueKey => ({ feature_id, entity_id });

async function put(c: InProcessCache, value: CachedValue, k: ValueKey = key(1)): Promise<void> {
  await c.putMany("t", "user", [{ key: k, value }]);
}
async function get(c: InProcessCache, k: ValueKey = key(1)): Promise<CachedValue | undefined> {
  return (await c.getMany("t", "user", [k]))[0];
}

describe("InProcessCache compare-and-set", () => {
  test("a later event time replaces; an earlier one does not", async () => {
    const c = new InProcessCache(100);
    await put(c, row(200, 1, 1));
    await put(c, row(100, 5, 2)); // older event, later write: ignored
    expect(await get(c)).toEqual(row(200, 1, 1));
    await put(c, row(300, 2, 3));
    expect(await get(c)).toEqual(row(300, 2, 3));
  });

  test("at the same event time the greater sequence wins, in either order of arrival", async () => {
    for (const arrivals of [[row(100, 7, 1), row(100, 3, 2)], [row(100, 3, 2), row(100, 7, 1)]]) {
      const c = new InProcessCache(100);
      for (const r of arrivals) await put(c, r);
      expect(await get(c)).toEqual(row(100, 7, 1));
    }
  });

  test("the same (event_time, seq) offered again keeps the held value", async () => {
    const c = new InProcessCache(100);
    await put(c, row(100, 3, 1));
    await put(c, row(100, 3, 9));
    expect(await get(c)).toEqual(row(100, 3, 1));
  });

  test("a negative entry fills only a gap and yields to any value; it never hides one", async () => {
    const c = new InProcessCache(100);
    expect(await get(c)).toBeUndefined();
    await put(c, null);
    expect(await get(c)).toBeNull();
    await put(c, row(1, 1, 1));
    expect(await get(c)).toEqual(row(1, 1, 1));
    await put(c, null);
    expect(await get(c)).toEqual(row(1, 1, 1));
  });

  test("each (tenant, entity type, entity, feature) is compared on its own, within one call too", async () => {
    const c = new InProcessCache(100);
    await c.putMany("t", "user", [
      { key: key(1), value: row(100, 1, 1) },
      { key: key(2), value: row(50, 2, 2) },
      { key: key(1), value: row(90, 3, 3) }, // older than the first entry for feature 1
      { key: key(1, "e2"), value: row(10, 4, 4) },
    ]);
    expect(await c.getMany("t", "user", [key(1), key(2), key(1, "e2"), key(3)])).toEqual([row(100, 1, 1), row(50, 2, 2), row(10, 4, 4), undefined]);
    expect(await c.getMany("t", "merchant", [key(1)])).toEqual([undefined]);
    expect(await c.getMany("u", "user", [key(1)])).toEqual([undefined]);
  });
});

describe("InProcessCache.invalidateEntities", () => {
  test("forgets every value (and negative entry) of the named entities only, by tenant and entity type", async () => {
    const c = new InProcessCache(100);
    await c.putMany("t", "user", [
      { key: key(1, "a"), value: row(100, 1, 1) },
      { key: key(2, "a"), value: null },
      { key: key(1, "b"), value: row(100, 2, 2) },
    ]);
    await c.putMany("t", "item", [{ key: key(3, "a"), value: row(100, 3, 3) }]);
    await c.putMany("u", "user", [{ key: key(4, "a"), value: row(100, 4, 4) }]);
    c.invalidateEntities([{ tenant: "t", entity_type: "user", entity_id: "a" }, { tenant: "t", entity_type: "user", entity_id: "never-cached" }]);
    expect(await c.getMany("t", "user", [key(1, "a"), key(2, "a"), key(1, "b")])).toEqual([undefined, undefined, row(100, 2, 2)]);
    expect(await c.getMany("t", "item", [key(3, "a")])).toEqual([row(100, 3, 3)]);
    expect(await c.getMany("u", "user", [key(4, "a")])).toEqual([row(100, 4, 4)]);
  });
});

describe("InProcessCache.getEntitiesNow", () => {
  test("answers what getManyNow answers for the entity-major keys of the same entities and features", async () => {
    const c = new InProcessCache(1000);
    for (const [e, f, v] of [["a", 1, row(10, 1, 1)], ["a", 2, null], ["b", 2, row(20, 2, 2)], ["b", 3, row(30, 3, 3)], ["c", 1, null]] as const) {
      await c.putMany("t", "user", [{ key: key(f, e), value: v }]);
    }
    await c.putMany("t", "item", [{ key: key(1, "a"), value: row(99, 9, 9) }]);
    for (const entities of [["a"], ["b", "a", "b"], ["a", "a"], ["nobody", "c", "b"], ["a", "b", "c", "d"]]) {
      for (const features of [[1], [1, 2, 3], [3, 2, 2, 1], [4]]) {
        const keys = entities.flatMap((e) => features.map((f) => key(f, e)));
        const many = c.getManyNow("t", "user", keys);
        expect(c.getEntitiesNow("t", "user", entities, features)).toEqual(many);
        expect(many.length).toBe(entities.length * features.length);
      }
    }
    expect(c.getEntitiesNow("t", "user", ["a"], [1, 2, 5])).toEqual([row(10, 1, 1), null, undefined]);
    expect(c.getEntitiesNow("t", "item", ["a"], [1])).toEqual([row(99, 9, 9)]);
  });
});

describe("InProcessCache rows (stableRows)", () => {
  test("each held value is one HeldRow, the same object on every read, a new one when the value changes", async () => {
    const c = new InProcessCache(100);
    expect(c.capabilities.stableRows).toBe(true);
    await put(c, row(100, 1, 1));
    const a = await get(c);
    expect(a).toBeInstanceOf(HeldRow);
    expect(a).toEqual(row(100, 1, 1));
    expect(await get(c)).toBe(a);
    expect(c.getEntitiesNow("t", "user", ["e1"], [1])[0]).toBe(a);
    await put(c, row(100, 1, 9)); // not newer: the held row stays
    expect(await get(c)).toBe(a);
    await put(c, row(200, 2, 2));
    const b = await get(c);
    expect(b).not.toBe(a);
    expect(b).toEqual(row(200, 2, 2));
  });
});
