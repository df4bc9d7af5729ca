/**
 * What a full garbage collection of the serving thread costs with the in-process cache full
 * (`bun bench/gc-pause.ts`): BENCH_ENTITIES entities x 10 features held by InProcessCache, the
 * values' JSON memoised as the online path does (a WeakMap keyed by the value bytes), then the
 * median time of a synchronous full collection (Bun.gc(true)), with and without the memo. Bun
 * runs a collection about once a second while the heap changes (its GC timer), on this thread.
 * Last, what the same values add when packed per entity in typed arrays (no object per value).
 */
import { InProcessCache } from "../src/store/memory/online-cache.ts";
import { num } from "./lib/common.ts";

const entities = num("BENCH_ENTITIES", 20_000);
const rounds = num("BENCH_GC_ROUNDS", 7);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

function pause(): number {
  const t = performance.now();
  Bun.gc(true);
  return performance.now() - t;
}

const baseline = median(Array.from({ length: rounds }, pause));
const cache = new InProcessCache(10_000_000);
const memo = new WeakMap<Uint8Array, string>();
const values: Uint8Array[] = [];
for (let e = 0; e < entities; e++) {
  const entries = Array.from({ length: 10 }, (_, f) => {
    const value = new Uint8Array([1, f, e & 255, 0, 0, 0, 0, 0, 0]);
    values.push(value);
    return { key: { feature_id: f + 1, entity_id: `user_${e}` }, value: { event_time: Date.now(), seq: e * 10 + f, value } };
  });
  await cache.putMany("bench", "user", entries);
}
const withCache = median(Array.from({ length: rounds }, pause));
for (const v of values) memo.set(v, String(v[2]));
values.length = 0;
const withMemo = median(Array.from({ length: rounds }, pause));
// the same values packed per entity (typed arrays, no object per value): the layout a GC-light cache would use
const packed = new Map<string, { ids: Int32Array; times: Float64Array; seqs: Float64Array; offs: Uint32Array; bytes: Uint8Array }>();
for (let e = 0; e < entities; e++) {
  const bytes = new Uint8Array(90);
  for (let f = 0; f < 10; f++) bytes.set([1, f, e & 255], f * 9);
  packed.set(`bench\u0000user\u0000user_${e}`, { ids: Int32Array.from({ length: 10 }, (_, f) => f + 1), times: new Float64Array(10).fill(Date.now()), seqs: Float64Array.from({ length: 10 }, (_, f) => e * 10 + f), offs: Uint32Array.from({ length: 11 }, (_, f) => f * 9), bytes });
}
const withPacked = median(Array.from({ length: rounds }, pause)) - withMemo;
console.log(`${entities} entities x 10 features; full GC median of ${rounds}: empty heap ${baseline.toFixed(1)} ms, cache ${withCache.toFixed(1)} ms, cache + JSON memo ${withMemo.toFixed(1)} ms; the same values packed per entity (typed arrays) add ${withPacked.toFixed(1)} ms; load average ${(await Bun.file("/proc/loadavg").text()).split(" ")[0]}`);
// keep both alive to the end
if ((await cache.getMany("bench", "user", [{ feature_id: 1, entity_id: "user_0" }]))[0] === undefined || memo === undefined || packed.size === 0) console.log("?");
