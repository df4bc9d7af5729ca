/**
 * What a garbage collection of the serving thread costs with the in-process cache full
 * (`bun bench/gc-pause.ts`). Bun runs a collection about once a second while the heap changes
 * (its GC timer), on the thread that answers online lookups: an eden (young objects) collection
 * almost every time, a full one when the heap has grown enough.
 *
 * The real structures, in process: the embedded stores (SQLite in a scratch directory + the
 * in-process cache, src/stores.ts as `serve` builds them), BENCH_ENTITIES entities x the 10
 * benchmark features written through the write path (which fills the cache), then every entity
 * looked up once through the online hot path (`lookupOnlineJsonNow`), which remembers each
 * value's JSON text and each entity's rendered result in the cache's rows (store/held-row.ts).
 * At each stage, the median of BENCH_GC_ROUNDS synchronous collections (bun:jsc `edenGC()`
 * after ~4 MB of short-lived garbage, as the timer finds it, and `fullGC()`), and the heap size.
 *
 * Last, for comparison, the memo as it was until session 10: WeakMaps keyed by each held
 * value's bytes and by each entity's first row (ephemerons, which JavaScriptCore walks whole
 * on every collection, eden included), added on top of the same heap.
 */
import { edenGC, fullGC, heapSize } from "bun:jsc";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildDeps, closeDeps } from "../src/cmd/common.ts";
import { loadConfig } from "../src/config.ts";
import type { DtypeName } from "../src/registry/dtype.ts";
import { lookupOnlineJsonNow } from "../src/serving/online.ts";
import { registerFeatures } from "../src/serving/register.ts";
import { writeFeatures } from "../src/serving/write.ts";
import type { StoredRow } from "../src/store/types.ts";
import { num } from "./lib/common.ts";
import { ENTITY_TYPE, FEATURES, FEATURE_NAMES, TENANT, record } from "./lib/dataset.ts";

const entities = num("BENCH_ENTITIES", 20_000);
const rounds = num("BENCH_GC_ROUNDS", 7);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

let sink: unknown;
function timed(gc: () => unknown, garbage: boolean): number {
  if (garbage) {
    // ~4 MB of short-lived objects and strings, as a second of serving leaves behind
    const junk: unknown[] = [];
    for (let i = 0; i < 40_000; i++) junk.push({ i, s: `request ${i}` });
    sink = junk;
    sink = undefined;
  }
  const t = performance.now();
  gc();
  return performance.now() - t;
}

interface Stage {
  stage: string;
  heap_mib: number;
  eden_ms: number;
  full_ms: number;
}
const stages: Stage[] = [];
function measure(stage: string): void {
  const full = median(Array.from({ length: rounds }, () => timed(fullGC, false)));
  const eden = median(Array.from({ length: rounds }, () => timed(edenGC, true)));
  fullGC();
  stages.push({ stage, heap_mib: Math.round((heapSize() / 2 ** 20) * 10) / 10, eden_ms: Math.round(eden * 100) / 100, full_ms: Math.round(full * 100) / 100 });
}

const dataDir = mkdtempSync(join(tmpdir(), "fs-gc-pause-"));
const deps = await buildDeps(loadConfig({ LOG_LEVEL: "silent", DATA_DIR: dataDir, BULK_WORKERS: "0" }));
try {
  const { ok } = await registerFeatures(
    deps,
    TENANT,
    FEATURES.map((f) => ({ input: { name: f.name, version: 1, dtype: f.dtype as DtypeName, entity_type: ENTITY_TYPE, ttl_hours: f.ttl_hours } })),
  );
  if (!ok) throw new Error("registering the benchmark features failed");
  measure("stores open, cache empty");

  const now = Date.now();
  for (let start = 0; start < entities; start += 1000) {
    const recs = [];
    for (let i = start; i < Math.min(entities, start + 1000); i++) recs.push(record(i, 0, 1, now));
    await writeFeatures(deps, TENANT, ENTITY_TYPE, recs);
  }
  measure(`cache full (${entities} entities x ${FEATURES.length} values)`);

  const ids = Array.from({ length: entities }, (_, i) => `user_${i}`);
  let bytes = 0;
  for (const id of ids) {
    const text = await lookupOnlineJsonNow(deps, TENANT, [id], FEATURE_NAMES, false);
    bytes += text.length;
  }
  measure("+ every entity served once (JSON memo in the held rows)");

  // the memo of the layout before session 10, on top: WeakMaps keyed by the held rows
  const online = deps.stores.online;
  const featureIds = FEATURES.map((f) => (deps.registry.current.resolve(TENANT, f.name) as { kind: "ok"; def: { id: number } }).def.id);
  const byBytes = new WeakMap<Uint8Array, string>();
  const byFirstRow = new WeakMap<StoredRow, { text: string }>();
  for (const id of ids) {
    const rows = online.getEntitiesNow?.(TENANT, ENTITY_TYPE, [id], featureIds) ?? [];
    for (const r of rows) if (r) byBytes.set(r.value, (r as { json?: string }).json ?? "");
    const first = rows[0];
    if (first) byFirstRow.set(first, { text: id });
  }
  measure("+ the same memo in WeakMaps (the layout until session 10)");
  if (byBytes.has(new Uint8Array(1)) || byFirstRow.has({} as StoredRow)) console.log("?");

  const la = (await Bun.file("/proc/loadavg").text()).split(" ")[0];
  console.log(`${entities} entities x ${FEATURES.length} features (${(bytes / entities).toFixed(0)} bytes of JSON per entity); median of ${rounds} synchronous collections; load average ${la}`);
  console.log("| stage | heap MiB | eden GC ms | full GC ms |");
  console.log("| --- | ---: | ---: | ---: |");
  for (const s of stages) console.log(`| ${s.stage} | ${s.heap_mib} | ${s.eden_ms} | ${s.full_ms} |`);
} finally {
  await closeDeps(deps);
  rmSync(dataDir, { recursive: true, force: true });
}
