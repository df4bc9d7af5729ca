/**
 * The Redis near cache's whole-entity lookup (near.ts `holdsAll`): entity-major, negatives as null,
 * escaped ids, and nothing answered unless every value is held.
 */
import { describe, expect, test } from "bun:test";
import { escapePart } from "../../src/store/redis/format.ts";
import { NearCache } from "../../src/store/redis/near.ts";
import type { CachedValue } from "../../src/store/types.ts";

const row = (t: number): CachedValue => ({ event_time: t, seq: t, value: new Uint8Array([t & 0xff]) });

describe("NearCache.holdsAll (the whole-entity read of the online path)", () => {
  const P = "fs:{1:t:user:";

  test("answers entity-major, a negative entry as null, entity ids as their escaped keys", () => {
    const near = new NearCache(1000);
    near.put(P, escapePart("a:b"), 1, row(1));
    near.put(P, escapePart("a:b"), 2, null);
    near.put(P, "c", 1, row(3));
    near.put(P, "c", 2, row(4));
    const out: (CachedValue | undefined)[] = new Array(4);
    expect(near.holdsAll(P, ["c", "a:b"], [2, 1], out)).toBe(true);
    expect(out).toEqual([row(4), row(3), null, row(1)]);
    // the very objects held (the online path memoises their JSON by identity)
    const again: (CachedValue | undefined)[] = new Array(4);
    near.holdsAll(P, ["c", "a:b"], [2, 1], again);
    expect(again[0]).toBe(out[0] as CachedValue);
  });

  test("false as soon as one value is not held: another feature, entity, prefix, or an invalidated key", () => {
    const near = new NearCache(1000);
    near.put(P, "c", 1, row(1));
    const out: (CachedValue | undefined)[] = new Array(2);
    expect(near.holdsAll(P, ["c"], [1, 2], out)).toBe(false);
    expect(near.holdsAll(P, ["c", "d"], [1], out)).toBe(false);
    expect(near.holdsAll("fs:{1:t:other:", ["c"], [1], out)).toBe(false);
    expect(near.holdsAll(P, ["c"], [1], out)).toBe(true);
    const before = near.changes;
    near.invalidate(`${P}c}`);
    expect(near.changes).toBe(before + 1);
    expect(near.holdsAll(P, ["c"], [1], out)).toBe(false);
  });
});
