/**
 * How a write's values are offered to the online store (serving/write.ts putOnline): a store
 * shared across processes (Redis) gets them in small compare-and-set calls, one at a time, so
 * online reads never queue behind a long run of the bulk path; an in-process store in one call.
 * Every value is offered exactly once either way.
 */
import { describe, expect, test } from "bun:test";
import pino from "pino";
import { putOnline, SHARED_OFFER_VALUES, type OnlineOffer } from "../../src/serving/write.ts";
import type { CachedValue, OnlineStore, ValueKey } from "../../src/store/types.ts";

type Entry = { key: ValueKey; value: CachedValue; ttlSeconds?: number };

/** An online store recording each putMany call; `failAt` makes the calls with those indexes throw. */
function recorder(shared: boolean, failAt: ReadonlySet<number> = new Set()) {
  const calls: Entry[][] = [];
  let inFlight = 0;
  let mostInFlight = 0;
  const store: OnlineStore = {
    name: "recorder",
    capabilities: { sharedAcrossProcesses: shared, stableRows: false },
    getMany: async () => [],
    putMany: async (_tenant, _type, entries) => {
      const i = calls.length;
      calls.push(entries);
      inFlight++;
      mostInFlight = Math.max(mostInFlight, inFlight);
      await Bun.sleep(0);
      inFlight--;
      if (failAt.has(i)) throw new Error("redis went away");
    },
    clear: async () => {},
    ping: async () => {},
    close: async () => {},
  };
  return { store, calls, mostInFlight: () => mostInFlight };
}

/** `entities` records of `features` values each, in record order (as a write's rows are). */
function offer(entities: number, features: number): { group: OnlineOffer; seqs: { seq: number }[] } {
  const rows: OnlineOffer["rows"][number][] = [];
  const defs: { ttlMs: number | null }[] = [];
  for (let e = 0; e < entities; e++) {
    for (let f = 0; f < features; f++) {
      rows.push({ feature_id: f + 1, entity_id: `e${e}`, event_time: 1000 + e, value: new Uint8Array([e % 256, f]) });
      defs.push({ ttlMs: f === 0 ? 90_000 : null });
    }
  }
  return { group: { tenant: "t", entityType: "user", rows, defs }, seqs: rows.map((_, i) => ({ seq: i + 1 })) };
}

const log = pino({ level: "silent" });
const keyOf = (e: Entry) => `${e.key.entity_id}/${e.key.feature_id}`;

describe("putOnline", () => {
  test("a shared store gets small calls, one at a time, cut between entities; every value exactly once, with its seq and TTL", async () => {
    const { group, seqs } = offer(2000, 10);
    const r = recorder(true);
    expect(await putOnline(r.store, log, group, seqs)).toBe(0);
    expect(r.mostInFlight()).toBe(1);
    expect(r.calls.length).toBeGreaterThanOrEqual(Math.floor(20_000 / (2 * SHARED_OFFER_VALUES)));
    for (const c of r.calls) expect(c.length).toBeLessThanOrEqual(2 * SHARED_OFFER_VALUES);
    // no entity is split between two calls (10 values each, far below the bound)
    for (let i = 1; i < r.calls.length; i++) {
      const prev = r.calls[i - 1] as Entry[];
      expect((r.calls[i] as Entry[])[0]?.key.entity_id).not.toBe(prev[prev.length - 1]?.key.entity_id);
    }
    const all = r.calls.flat();
    expect(all.length).toBe(20_000);
    expect(new Set(all.map(keyOf)).size).toBe(20_000);
    all.forEach((e, i) => {
      expect(e.value?.seq).toBe(i + 1);
      expect(e.value?.event_time).toBe(group.rows[i]?.event_time as number);
      expect(e.ttlSeconds).toBe(i % 10 === 0 ? 90 : undefined);
    });
  });

  test("an entity with more values than twice the bound is split at the bound", async () => {
    const { group, seqs } = offer(1, 3 * SHARED_OFFER_VALUES);
    const r = recorder(true);
    await putOnline(r.store, log, group, seqs);
    expect(r.calls.map((c) => c.length)).toEqual([2 * SHARED_OFFER_VALUES, SHARED_OFFER_VALUES]);
  });

  test("an in-process store gets everything in one call", async () => {
    const { group, seqs } = offer(300, 10);
    const r = recorder(false);
    expect(await putOnline(r.store, log, group, seqs)).toBe(0);
    expect(r.calls.map((c) => c.length)).toEqual([3000]);
  });

  test("a failed call counts its values as failed and the others are still offered; nothing throws", async () => {
    const { group, seqs } = offer(100, 10);
    const r = recorder(true, new Set([1]));
    const failed = await putOnline(r.store, log, group, seqs);
    expect(failed).toBe((r.calls[1] as Entry[]).length);
    expect(r.calls.flat().length).toBe(1000);
  });

  test("nothing to offer: no call", async () => {
    const r = recorder(true);
    expect(await putOnline(r.store, log, { tenant: "t", entityType: "user", rows: [], defs: [] }, [])).toBe(0);
    expect(r.calls.length).toBe(0);
  });
});
