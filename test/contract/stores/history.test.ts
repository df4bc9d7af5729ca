/**
 * History reads (`OfflineStore.getHistory`) and the sorted merge built on them
 * (serving/asof-merge.ts) on every backend: the merge's answers equal a brute-force oracle and
 * the per-key probes (`getAsOf`), with ties, out-of-order writes, TTL edges, missing and null
 * ids, in every regime: histories held across chunks, dropped when over budget, reads split
 * when they hit their limit, and per-key probes when histories are too long to read whole.
 */
import { describe, expect, test } from "bun:test";
import { prng } from "../../../src/lib/prng.ts";
import { decodeValue, encodeValue, parseDtype, type Dtype, type StoredValue } from "../../../src/registry/dtype.ts";
import type { Definition } from "../../../src/registry/snapshot.ts";
import { AsOfMerge, decodePacked, storeIo, type MergeLimits } from "../../../src/serving/asof-merge.ts";
import type { Database, HistoryRow, ValueWrite } from "../../../src/store/types.ts";
import { databaseFactories } from "./backends.ts";
import { acrossMonths, hashOf, text, val } from "./support.ts";

const T = Date.UTC(2024, 0, 15);
const H = 3_600_000;

function packed(feature_id: number, entity_id: string, event_time: number, type: Dtype, v: StoredValue): ValueWrite {
  const value = encodeValue(type, v);
  return { feature_id, entity_id, event_time, value, value_hash: hashOf(value) };
}

function definition(id: number, dtype: string, entity_type: string, ttl_hours: number | null): Definition {
  const type = parseDtype(dtype) as Dtype;
  return { id, tenant: "t", name: `f${id}`, version: 1, dtype, entity_type, ttl_hours, description: null, owner: null, tags: {}, created_at: 0, updated_at: 0, type, ttlMs: ttl_hours === null ? null : ttl_hours * H } as Definition;
}

describe("packed values read directly", () => {
  test("decodePacked equals decodeValue for every scalar encoding", () => {
    const cases: [string, StoredValue[]][] = [
      ["bool", [true, false]],
      ["int32", [0, 1, 127, 128, 255, 256, 65_535, 65_536, 2 ** 31 - 1, -1, -32, -33, -128, -129, -32_768, -32_769, -(2 ** 31)]],
      ["int64", [0, 5, 2 ** 32, 2 ** 32 + 1, -(2 ** 40), 2n ** 60n, -(2n ** 60n), 2 ** 53 - 1]],
      ["float32", [0, 0.5, Math.fround(0.1), -Math.fround(3.3), 1e30, 7]],
      ["float64", [0, 0.1, -2.5, 1e300, -1e-300, Number.MAX_VALUE, 12, 3_000_000_000, Number.NaN]],
      ["timestamp", [0, T, T + 1, -1]],
      ["string", ["", "a", "x".repeat(300)]],
      ["float32[]", [new Float32Array([1, 2.5])]],
      ["int64[]", [[1, 2n ** 62n]]],
    ];
    for (const [dtype, values] of cases) {
      const type = parseDtype(dtype) as Dtype;
      for (const v of values) {
        const b = encodeValue(type, v);
        expect([dtype, decodePacked({ type }, b)]).toEqual([dtype, decodeValue(type, b) as never]);
      }
    }
  });
});

for (const factory of databaseFactories()) {
  describe(`history reads and the sorted merge on ${factory.name}`, () => {
    test("getHistory: every value up to `upTo`, grouped by (feature, entity), each group in (event_time, seq) order, at most `limit`", async () => {
      const { db } = await factory.open();
      // out of order, with a tie (two values at one event time: the later write is after the earlier)
      await db.writeValues([val(1, "b", T + 2, "b2"), val(1, "a", T + 1, "a1"), val(2, "a", T, "x0"), val(1, "a", T, "a0")]);
      await db.writeValues([val(1, "a", T + 1, "a1'"), val(1, "c", T, "c0"), val(1, "a", T + 5, "a5"), val(3, "a", T, "other")]);
      const rows = await db.getHistory([1, 2], ["a", "b", "zz"], T + 2, 100);
      const groups = new Map<string, [number, number, string][]>();
      let last = "";
      for (const [f, e, et, seq, v] of rows) {
        const k = `${f}|${e}`;
        if (k !== last) expect(groups.has(k)).toBe(false); // contiguous
        last = k;
        groups.set(k, [...(groups.get(k) ?? []), [et, seq, text(v) as string]]);
      }
      expect([...groups.keys()].sort()).toEqual(["1|a", "1|b", "2|a"]);
      expect((groups.get("1|a") ?? []).map((r) => r[2])).toEqual(["a0", "a1", "a1'"]);
      const a = groups.get("1|a") ?? [];
      expect((a[1] as [number, number, string])[1]).toBeLessThan((a[2] as [number, number, string])[1]);
      expect((groups.get("1|b") ?? []).map((r) => r[2])).toEqual(["b2"]);
      expect((groups.get("2|a") ?? []).map((r) => r[2])).toEqual(["x0"]);
      expect(await db.getHistory([1], ["a"], T + 2, 2)).toHaveLength(2);
      expect(await db.getHistory([], ["a"], T + 2, 10)).toEqual([]);
      expect(await db.getHistory([1], [], T + 2, 10)).toEqual([]);
      expect(await db.getHistory([1], ["a"], T - 1, 10)).toEqual([]);
    });

    test("getHistory reads across partitions and DEFAULT (PostgreSQL) in order", async () => {
      const { db } = await factory.open();
      const { rows } = acrossMonths(Date.now());
      await db.writeValues([...rows].reverse());
      const got = (await db.getHistory([1], ["e"], Number.MAX_SAFE_INTEGER, 100)) as HistoryRow[];
      expect(got.map((r) => text(r[4]))).toEqual(rows.map((r) => text(r.value)));
    });

    // The oracle: random histories of three features of two entity types (ties, out-of-order
    // writes, TTL), asked at times on, just before and just after event times and TTL edges.
    async function world(db: Database, seed: number, entities: number, perPair: number) {
      const rnd = prng(seed);
      const defs = [definition(11, "float64", "user", 1), definition(12, "int64", "user", null), definition(13, "string", "merchant", 2)];
      const times = Array.from({ length: 6 }, (_, i) => T + i * 30 * 60_000);
      const stored: { f: number; e: string; et: number; seq: number; v: StoredValue }[] = [];
      for (let round = 0; round < perPair; round++) {
        const batch: ValueWrite[] = [];
        const meta: { f: number; e: string; et: number; v: StoredValue }[] = [];
        for (const d of defs) {
          for (let i = 0; i < entities; i++) {
            if (rnd() < 0.2) continue;
            const e = `${d.entity_type[0]}${i}`;
            const et = (times[Math.floor(rnd() * times.length)] as number) + (rnd() < 0.3 ? 1 : 0);
            const v: StoredValue = d.dtype === "float64" ? rnd() * 100 - 50 : d.dtype === "int64" ? (rnd() < 0.2 ? 2n ** 60n + BigInt(round) : Math.floor(rnd() * 1e6) - 5e5) : `s${round}-${i}`;
            batch.push(packed(d.id, e, et, d.type, v));
            meta.push({ f: d.id, e, et, v });
          }
        }
        // shuffled: out of event-time order within a write too
        const order = batch.map((_, i) => i).sort(() => rnd() - 0.5);
        const outcomes = await db.writeValues(order.map((i) => batch[i] as ValueWrite));
        order.forEach((i, j) => {
          const o = outcomes[j];
          if (o?.status === "stored") stored.push({ ...(meta[i] as (typeof meta)[number]), seq: o.seq });
        });
      }
      return { defs, times, stored, rnd };
    }

    function frame(rnd: () => number, times: number[], entities: number, rows: number) {
      const ats = new Float64Array(rows);
      const users: (string | null)[] = [];
      const merchants: (string | null)[] = [];
      const edges = times.flatMap((t) => [t, t - 1, t + 1, t + H, t + H - 1, t + 2 * H, t + 2 * H + 1]);
      for (let r = 0; r < rows; r++) {
        ats[r] = edges[Math.floor(rnd() * edges.length)] as number;
        users.push(rnd() < 0.05 ? null : rnd() < 0.05 ? "u_never" : `u${Math.floor(rnd() * entities)}`);
        merchants.push(rnd() < 0.05 ? "m_never" : `m${Math.floor(rnd() * entities)}`);
      }
      return { ats, ids: new Map([["user", users], ["merchant", merchants]]) };
    }

    const regimes: { name: string; entities: number; perPair: number; rows: number; chunk: number; limits?: MergeLimits }[] = [
      { name: "many rows per entity: histories read once and held", entities: 6, perPair: 12, rows: 900, chunk: 128 },
      { name: "held histories dropped over budget and read again", entities: 6, perPair: 12, rows: 600, chunk: 50, limits: { heldRows: 40 } },
      { name: "reads split when they hit their limit", entities: 20, perPair: 30, rows: 500, chunk: 200, limits: { readRows: 64 } },
      { name: "histories too long to read whole: per-key probes", entities: 40, perPair: 30, rows: 60, chunk: 25, limits: { readRows: 32 } },
    ];
    for (const regime of regimes) {
      test(`the merge equals the oracle and the per-key probes: ${regime.name}`, async () => {
        const { db } = await factory.open();
        const { defs, times, stored, rnd } = await world(db, regime.entities * 1000 + regime.perPair, regime.entities, regime.perPair);
        const { ats, ids } = frame(rnd, times, regime.entities, regime.rows);
        let reads = 0;
        let full = 0;
        let probes = 0;
        const io = storeIo(() => db, (_what, fn) => fn());
        const counted = {
          history: async (...a: Parameters<typeof io.history>) => {
            reads++;
            const rows = await io.history(...a);
            if (rows.length >= a[3]) full++;
            return rows;
          },
          probe: (keys: Parameters<typeof io.probe>[0]) => {
            probes++;
            return io.probe(keys);
          },
        };
        const merge = new AsOfMerge(counted, defs, ids, ats, regime.limits);
        for (let start = 0; start < regime.rows; start += regime.chunk) {
          const n = Math.min(regime.chunk, regime.rows - start);
          const answers = await merge.answer(start, n);
          for (let f = 0; f < defs.length; f++) {
            const d = defs[f] as Definition;
            const col = ids.get(d.entity_type) as (string | null)[];
            const keys = [];
            for (let r = 0; r < n; r++) if (col[start + r] !== null) keys.push({ feature_id: d.id, entity_id: col[start + r] as string, at: ats[start + r] as number });
            const probed = await db.getAsOf(keys);
            let k = 0;
            for (let r = 0; r < n; r++) {
              const e = col[start + r];
              const at = ats[start + r] as number;
              let best: (typeof stored)[number] | undefined;
              for (const s of stored) {
                if (s.f !== d.id || s.e !== e || s.et > at) continue;
                if (!best || s.et > best.et || (s.et === best.et && s.seq > best.seq)) best = s;
              }
              const status = !best ? "not_found" : d.ttlMs !== null && best.et <= at - d.ttlMs ? "expired" : "present";
              const want = status === "present" ? (best?.v ?? null) : null;
              const got = { value: answers[f]?.values[r], status: answers[f]?.statuses[r] };
              expect({ row: start + r, feature: d.name, ...got }).toEqual({ row: start + r, feature: d.name, value: want as never, status });
              // the event time of the row answered (expired ones too), NaN when none: the batch
              // endpoint's metadata.event_time
              const time = answers[f]?.times[r] as number;
              expect({ row: start + r, feature: d.name, time: Number.isNaN(time) ? null : time }).toEqual({ row: start + r, feature: d.name, time: best ? best.et : null });
              if (e !== null) {
                const p = probed[k++];
                expect(p ? p.event_time : null).toBe(best ? best.et : null);
              }
            }
          }
        }
        if (regime.name.includes("probes")) expect(probes).toBeGreaterThan(0);
        else expect(probes).toBe(0);
        if (regime.name.includes("limit") || regime.name.includes("probes")) expect(full).toBeGreaterThan(0);
        expect(reads).toBeGreaterThan(0);
      }, 60_000);
    }
  });
}
