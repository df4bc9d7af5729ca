/**
 * Micro-benchmarks (`bun run bench:micro`), mitata, in process. Each group compares variants in
 * one run:
 * - value codec per dtype: msgpackr (what every store holds) vs JSON
 * - key building and cache lookup: the in-process cache's string keys vs alternatives
 * - request validation: the zod schemas of src/schemas.ts (vs JSON.parse alone, and a
 *   hand-written check of the same rules, to size the overhead)
 * - serving a value: decode + JSON form per dtype, shortest float32, time formatting
 * - an online lookup (1 x 10 and 100 x 10): embedded (SQLite + in-process cache), database only,
 *   and Redis (RedisCache) when redis-server is available (started through the test harness)
 * - point-in-time resolution: 1,000 rows x 10 features on SQLite, store call vs full lookup
 * - per-request overheads: API key authentication, metrics observations
 *
 * BENCH_SRC=DIR benchmarks another source tree (a scratch copy with a proposed change).
 * MICRO_FILTER=regex runs only matching benchmarks. Results: stdout (mitata) and, when run from
 * bench/run.ts, a JSON summary (MICRO_JSON=path).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bench, do_not_optimize, group, run, summary } from "mitata";
import { ROOT } from "./lib/common.ts";
import { ENTITY_TYPE, FEATURES, FEATURE_NAMES, TENANT, batchRows, onlineMany, onlineOne, prng, record } from "./lib/dataset.ts";

const SRC = join(process.env.BENCH_SRC ?? ROOT, "src");
const imp = <T>(p: string): Promise<T> => import(join(SRC, p)) as Promise<T>;

const dtype = await imp<typeof import("../src/registry/dtype.ts")>("registry/dtype.ts");
const schemas = await imp<typeof import("../src/schemas.ts")>("schemas.ts");
const configMod = await imp<typeof import("../src/config.ts")>("config.ts");
const common = await imp<typeof import("../src/cmd/common.ts")>("cmd/common.ts");
const online = await imp<typeof import("../src/serving/online.ts")>("serving/online.ts");
const batch = await imp<typeof import("../src/serving/batch.ts")>("serving/batch.ts");
const features = await imp<typeof import("../src/serving/features.ts")>("serving/features.ts");
const register = await imp<typeof import("../src/serving/register.ts")>("serving/register.ts");
const write = await imp<typeof import("../src/serving/write.ts")>("serving/write.ts");
const keysMod = await imp<typeof import("../src/serving/keys.ts")>("serving/keys.ts");
const time = await imp<typeof import("../src/lib/time.ts")>("lib/time.ts");
const { LRUCache } = await import("lru-cache");

type Deps = import("../src/serving/deps.ts").Deps;
type DtypeName = import("../src/registry/dtype.ts").DtypeName;

const rnd = prng(99);
const ENTITIES = Number(process.env.MICRO_ENTITIES ?? 5000);
const DAYS = 3;
const NOW = Date.now();
const cleanups: (() => Promise<void>)[] = [];

// ───────────────────────────── stores with data ─────────────────────────────

async function makeDeps(env: Record<string, string>): Promise<Deps> {
  const cfg = configMod.loadConfig({ LOG_LEVEL: "silent", ...env });
  const deps = await common.buildDeps(cfg);
  cleanups.push(() => common.closeDeps(deps));
  const { ok } = await register.registerFeatures(
    deps,
    TENANT,
    FEATURES.map((f) => ({ input: { name: f.name, version: 1, dtype: f.dtype as DtypeName, entity_type: ENTITY_TYPE, ttl_hours: f.ttl_hours } })),
  );
  if (!ok) throw new Error("registering the benchmark features failed");
  for (let d = 0; d < DAYS; d++) {
    for (let start = 0; start < ENTITIES; start += 1000) {
      const recs = [];
      for (let i = start; i < Math.min(ENTITIES, start + 1000); i++) recs.push(record(i, d, DAYS, NOW));
      await write.writeFeatures(deps, TENANT, ENTITY_TYPE, recs);
    }
  }
  return deps;
}

const dataDir = mkdtempSync(join(tmpdir(), "fs-micro-"));
cleanups.push(async () => rmSync(dataDir, { recursive: true, force: true }));
const embedded = await makeDeps({ DATA_DIR: dataDir });

let redisDeps: Deps | undefined;
if (Bun.which("redis-server") !== null && process.env.MICRO_REDIS !== "0") {
  try {
    const { startRedis } = await import("../test/harness/services.ts");
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    const dir2 = mkdtempSync(join(tmpdir(), "fs-micro-redis-"));
    cleanups.push(async () => rmSync(dir2, { recursive: true, force: true }));
    // SQLite as the database, Redis as the online cache: the Redis read path in isolation.
    redisDeps = await makeDeps({ DATA_DIR: dir2, REDIS_URL: redis.url });
  } catch (e) {
    console.error(`Redis variant skipped: ${(e as Error).message.split("\n")[0]}`);
  }
}

/** A Deps whose cache always misses: every lookup reads the database. */
const dbOnly: Deps = {
  ...embedded,
  stores: {
    ...embedded.stores,
    online: { name: "always-miss", capabilities: { sharedAcrossProcesses: false, stableRows: true }, getMany: async (_t: string, _e: string, keys: unknown[]) => new Array(keys.length).fill(undefined), putMany: async () => {}, clear: async () => {}, ping: async () => {}, close: async () => {} },
  },
};

const ids1 = Array.from({ length: 1000 }, () => `user_${Math.floor(rnd() * ENTITIES)}`);
const ids100 = Array.from({ length: 100 }, () => `user_${Math.floor(rnd() * ENTITIES)}`);
let k = 0;
const nextId = (): string => ids1[k++ % ids1.length] as string;
// warm the caches
for (const id of ids1) {
  await online.lookupOnline(embedded, TENANT, [id], FEATURE_NAMES);
  if (redisDeps) await online.lookupOnline(redisDeps, TENANT, [id], FEATURE_NAMES);
}
await online.lookupOnline(embedded, TENANT, ids100, FEATURE_NAMES);
if (redisDeps) await online.lookupOnline(redisDeps, TENANT, ids100, FEATURE_NAMES);

// ───────────────────────────── codec ─────────────────────────────

const samples: Record<string, unknown> = {
  bool: true,
  int32: 123456,
  int64: "9007199254740993",
  float32: 0.1,
  float64: 1520.5,
  string: "hello feature store",
  bytes: Buffer.from("some opaque bytes, 32 of them!!!").toString("base64"),
  timestamp: "2024-01-15T09:58:00.000Z",
  "float32[] (16)": Array.from({ length: 16 }, () => rnd() * 2 - 1),
  "float32[] (256)": Array.from({ length: 256 }, () => rnd() * 2 - 1),
  "string[]": ["new", "vip", "mobile"],
};

group("codec: msgpackr (stored form) vs JSON, encode + decode, per dtype", () => {
  for (const [label, json] of Object.entries(samples)) {
    const name = label.replace(/ \(.*\)$/, "") as DtypeName;
    const t = dtype.parseDtype(name);
    if (!t) continue;
    const c = dtype.coerceValue(t, json);
    if (!c.ok) throw new Error(`${label}: ${c.message}`);
    const stored = c.value;
    const packed = dtype.encodeValue(t, stored);
    const asJson = JSON.stringify(json);
    summary(() => {
      bench(`${label}: msgpackr encode+decode (${packed.byteLength} B)`, () => do_not_optimize(dtype.decodeValue(t, dtype.encodeValue(t, stored))));
      bench(`${label}: JSON stringify+parse (${Buffer.byteLength(asJson)} B)`, () => do_not_optimize(JSON.parse(JSON.stringify(json))));
    });
  }
});

// ───────────────────────────── keys ─────────────────────────────

group("key building + lookup: 10 values of one entity in an LRU of 200k entries", () => {
  const N = 20_000;
  const lruFlat = new LRUCache<string, object>({ max: 1_000_000 });
  const mapFlat = new Map<string, object>();
  const lruNested = new LRUCache<string, Map<number, object>>({ max: 100_000 });
  const row = { event_time: 1, seq: 1, value: new Uint8Array(4) };
  for (let e = 0; e < N; e++) {
    const inner = new Map<number, object>();
    for (let f = 1; f <= 10; f++) {
      lruFlat.set(`${f}\u0000user_${e}`, row);
      mapFlat.set(`${f}\u0000user_${e}`, row);
      inner.set(f, row);
    }
    lruNested.set(`user_${e}`, inner);
  }
  const ents = Array.from({ length: 1024 }, () => `user_${Math.floor(rnd() * N)}`);
  let i = 0;
  summary(() => {
    bench("current: lru-cache, key `${feature_id}\\0${entity_id}` per value", () => {
      const e = ents[i++ & 1023] as string;
      for (let f = 1; f <= 10; f++) do_not_optimize(lruFlat.get(`${f}\u0000${e}`));
    });
    bench("Map (no LRU order), same string keys", () => {
      const e = ents[i++ & 1023] as string;
      for (let f = 1; f <= 10; f++) do_not_optimize(mapFlat.get(`${f}\u0000${e}`));
    });
    bench("entity-major: lru-cache by entity id -> Map<feature_id, row>", () => {
      const m = lruNested.get(ents[i++ & 1023] as string);
      for (let f = 1; f <= 10; f++) do_not_optimize(m?.get(f));
    });
    bench("key string only (template, no lookup)", () => {
      const e = ents[i++ & 1023] as string;
      for (let f = 1; f <= 10; f++) do_not_optimize(`${f}\u0000${e}`);
    });
  });
});

// ───────────────────────────── validation ─────────────────────────────

group("request validation (zod schemas of src/schemas.ts)", () => {
  const one = onlineOne(42);
  const many = onlineMany(Array.from({ length: 100 }, (_, j) => j));
  const rows = batchRows(Array.from({ length: 1000 }, (_, j) => j), DAYS, NOW, rnd);
  const oneObj = JSON.parse(one) as unknown;
  const manyObj = JSON.parse(many) as unknown;
  const rowsObj = JSON.parse(rows) as unknown;
  const REF = /^[a-z][a-z0-9_]{0,127}(@[1-9][0-9]{0,8})?$/;
  const handOne = (v: unknown): boolean => {
    if (typeof v !== "object" || v === null) return false;
    const o = v as Record<string, unknown>;
    for (const key in o) if (key !== "entity_id" && key !== "feature_names") return false;
    const id = o.entity_id;
    const names = o.feature_names;
    if (typeof id !== "string" || id.length === 0 || id.includes("\u0000") || Buffer.byteLength(id) > 512) return false;
    if (!Array.isArray(names) || names.length === 0 || names.length > 1000) return false;
    for (const n of names) if (typeof n !== "string" || !REF.test(n)) return false;
    return true;
  };
  summary(() => {
    bench("online 1x10: JSON.parse only", () => do_not_optimize(JSON.parse(one)));
    bench("online 1x10: zod OnlineSingleBody.safeParse", () => do_not_optimize(schemas.OnlineSingleBody.safeParse(oneObj)));
    bench("online 1x10: zod OnlineBody (union) .safeParse", () => do_not_optimize(schemas.OnlineBody.safeParse(oneObj)));
    bench("online 1x10: hand-written check (same rules)", () => do_not_optimize(handOne(oneObj)));
  });
  summary(() => {
    bench("online 100x10: JSON.parse only", () => do_not_optimize(JSON.parse(many)));
    bench("online 100x10: zod OnlineMultiBody.safeParse", () => do_not_optimize(schemas.OnlineMultiBody.safeParse(manyObj)));
  });
  summary(() => {
    bench("batch 1000 rows: JSON.parse only", () => do_not_optimize(JSON.parse(rows)));
    bench("batch 1000 rows: zod BatchRowsBody.safeParse", () => do_not_optimize(schemas.BatchRowsBody.safeParse(rowsObj)));
  });
});

// ───────────────────────────── serving a value ─────────────────────────────

group("serving a value: decode + JSON form", () => {
  const snapshot = embedded.registry.current;
  const { defs } = features.resolveFeatures(snapshot, TENANT, FEATURE_NAMES);
  const rows = defs.map((d) => {
    const c = dtype.coerceValue(d.type, (record(7, 2, DAYS, NOW).features as Record<string, unknown>)[d.name]);
    if (!c.ok) throw new Error(c.message);
    return { event_time: NOW - 1000, seq: 1, value: dtype.encodeValue(d.type, c.value) };
  });
  summary(() => {
    bench("serveValue x 10 (one entity, the 10 features)", () => {
      for (let f = 0; f < defs.length; f++) do_not_optimize(features.serveValue(defs[f]!, rows[f], NOW));
    });
    bench("decodeValue x 10 only", () => {
      for (let f = 0; f < defs.length; f++) do_not_optimize(dtype.decodeValue(defs[f]!.type, rows[f]!.value));
    });
    bench("formatTime x 10 (same event time)", () => {
      for (let f = 0; f < 10; f++) do_not_optimize(time.formatTime(NOW - 1000));
    });
  });
  const f32 = Float32Array.from({ length: 16 }, () => rnd() * 2 - 1);
  const f32short = Float32Array.from({ length: 16 }, () => Math.round((rnd() * 2 - 1) * 1e4) / 1e4);
  const bisect = (x: number): number => {
    if (x === 0 || !Number.isFinite(x)) return x;
    let lo = 1;
    let hi = 9;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (Math.fround(Number(x.toPrecision(mid))) === x) hi = mid;
      else lo = mid + 1;
    }
    return Number(x.toPrecision(lo));
  };
  for (let j = 0; j < 16; j++) if (bisect(f32[j]!) !== dtype.shortestFloat32(f32[j]!)) throw new Error("bisect differs");
  summary(() => {
    bench("shortestFloat32 x 16, full-precision embedding (current: linear p = 1..9)", () => do_not_optimize(Array.from(f32, dtype.shortestFloat32)));
    bench("shortestFloat32 x 16, full-precision embedding (bisection over p)", () => do_not_optimize(Array.from(f32, bisect)));
    bench("shortestFloat32 x 16, 4-digit embedding (current)", () => do_not_optimize(Array.from(f32short, dtype.shortestFloat32)));
    bench("shortestFloat32 x 16, 4-digit embedding (bisection)", () => do_not_optimize(Array.from(f32short, bisect)));
  });
});

// ───────────────────────────── online lookup ─────────────────────────────

group("online lookup in process (lookupOnline, warm cache)", () => {
  summary(() => {
    bench("1x10 embedded (in-process cache hit)", async () => do_not_optimize(await online.lookupOnline(embedded, TENANT, [nextId()], FEATURE_NAMES)));
    bench("1x10 database only (SQLite, newest history rows)", async () => do_not_optimize(await online.lookupOnline(dbOnly, TENANT, [nextId()], FEATURE_NAMES)));
    if (redisDeps) {
      const r = redisDeps;
      bench("1x10 Redis (RedisCache hit, one HMGET)", async () => do_not_optimize(await online.lookupOnline(r, TENANT, [nextId()], FEATURE_NAMES)));
    }
  });
  summary(() => {
    bench("100x10 embedded", async () => do_not_optimize(await online.lookupOnline(embedded, TENANT, ids100, FEATURE_NAMES)));
    bench("100x10 database only", async () => do_not_optimize(await online.lookupOnline(dbOnly, TENANT, ids100, FEATURE_NAMES)));
    if (redisDeps) {
      const r = redisDeps;
      bench("100x10 Redis (100 pipelined HMGETs)", async () => do_not_optimize(await online.lookupOnline(r, TENANT, ids100, FEATURE_NAMES)));
    }
    bench("100x10 embedded + JSON.stringify of the response", async () => do_not_optimize(JSON.stringify({ results: await online.lookupOnline(embedded, TENANT, ids100, FEATURE_NAMES) })));
  });
});

// ───────────────────────────── point in time ─────────────────────────────

group("point-in-time resolution, 1,000 rows x 10 features (SQLite)", () => {
  const { defs } = features.resolveFeatures(embedded.registry.current, TENANT, FEATURE_NAMES);
  const body = JSON.parse(batchRows(Array.from({ length: 1000 }, () => Math.floor(rnd() * ENTITIES)), DAYS, NOW, rnd)) as { rows: { entity_id: string; timestamp: string }[] };
  const rows = body.rows.map((r) => ({ entity_id: r.entity_id, at: time.parseTime(r.timestamp) as number }));
  const keys = rows.flatMap((r) => defs.map((d) => ({ feature_id: d.id, entity_id: r.entity_id, at: r.at })));
  summary(() => {
    bench("db.getAsOf (10,000 keys, one read transaction)", async () => do_not_optimize(await embedded.stores.offline.getAsOf(keys)));
    bench("lookupBatch (store + serving, JSON-ready rows)", async () => {
      const out = [];
      for await (const chunk of batch.lookupBatch(embedded, TENANT, rows, FEATURE_NAMES)) out.push(chunk);
      do_not_optimize(out);
    });
    bench("lookupBatch + JSON.stringify", async () => {
      const out = [];
      for await (const chunk of batch.lookupBatch(embedded, TENANT, rows, FEATURE_NAMES)) out.push(...chunk.results);
      do_not_optimize(JSON.stringify({ results: out }));
    });
  });
});

// ───────────────────────────── per-request overheads ─────────────────────────────

group("per-request overheads", () => {
  const { key, row } = keysMod.generateKey(TENANT, ["read"], NOW, null);
  const ring = new keysMod.KeyRing({ listKeys: async () => [row] }, time.systemClock);
  void ring.reload();
  const m = embedded.metrics;
  const child = m.servedValueAge.labels({ entity_type: ENTITY_TYPE });
  summary(() => {
    bench("KeyRing.authenticate (SHA-256 + constant-time compare)", () => do_not_optimize(ring.authenticate(key)));
    bench("servedValueAge.observe({entity_type}, v) x 10 (current, per value)", () => {
      for (let f = 0; f < 10; f++) m.servedValueAge.observe({ entity_type: ENTITY_TYPE }, 12.5);
    });
    bench("servedValueAge child .observe(v) x 10 (labels bound once)", () => {
      for (let f = 0; f < 10; f++) child.observe(12.5);
    });
    bench("httpRequests.inc + httpDuration.observe (per request)", () => {
      m.httpRequests.inc({ route: "/api/v1/features/online", method: "POST", status: "200" });
      m.httpDuration.observe({ route: "/api/v1/features/online", method: "POST" }, 0.0005);
    });
  });
});

const filter = process.env.MICRO_FILTER ? new RegExp(process.env.MICRO_FILTER) : undefined;
const result = await run(filter ? { filter } : {});
if (process.env.MICRO_JSON) {
  const out: Record<string, { name: string; avg_ns: number; p50_ns: number; p99_ns: number }[]> = {};
  // mitata reports trials in definition order; recover the group names from the layout
  for (const t of result.benchmarks as unknown as { alias: string; group?: number; runs: { name: string; stats?: { avg: number; p50: number; p99: number } }[] }[]) {
    const g = groupOf(t.alias);
    for (const r of t.runs) if (r.stats) (out[g] ??= []).push({ name: r.name, avg_ns: Math.round(r.stats.avg), p50_ns: Math.round(r.stats.p50), p99_ns: Math.round(r.stats.p99) });
  }
  writeFileSync(process.env.MICRO_JSON, JSON.stringify(out, null, 2));
}
for (const c of cleanups.reverse()) await c().catch(() => {});
process.exit(0);

function groupOf(alias: string): string {
  if (/msgpackr|JSON stringify\+parse/.test(alias)) return "codec (encode+decode)";
  if (/lru|Map|key string/.test(alias)) return "key building + lookup";
  if (/zod|JSON.parse only|hand-written/.test(alias)) return "request validation";
  if (/serveValue|decodeValue|formatTime|shortestFloat32/.test(alias)) return "serving a value";
  if (/1x10|100x10/.test(alias)) return "online lookup in process";
  if (/getAsOf|lookupBatch/.test(alias)) return "point-in-time 1000x10 (SQLite)";
  return "per-request overheads";
}
