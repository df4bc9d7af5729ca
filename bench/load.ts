/**
 * Load benchmark (`bun run bench:load`): builds and starts dist/feature-store, loads N entities
 * x 10 features over HTTP, and drives it with vegeta at constant arrival rates, side by side
 * with a bare Bun.serve answering a body of the same size at the same rate.
 *
 * Stacks: `embedded` (SQLite + in-process cache, the default) and `postgres+redis` (started by
 * the test harness). Per stack: saturation searches, then steady runs; on Redis also a Zipf key
 * mix with Redis memory capped (volatile-lru) and a redis-benchmark HMGET ceiling.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { redisCommand, startPostgres, startRedis, type PgService, type RedisService } from "../test/harness/services.ts";
import { enabled, ensureDir, loadAverage, log, machineInfo, pinned, round, run, settings, TMP_DIR } from "./lib/common.ts";
import { batchRows, onlineMany, onlineOne, prng, zipfSampler } from "./lib/dataset.ts";
import {
  buildBinary,
  cacheCounters,
  familyCpuSeconds,
  hitRate,
  loadData,
  pinToServerCore,
  post,
  postmasterPid,
  redisPid,
  startBaseline,
  startServer,
  type Baseline,
  type Server,
  type StackEnv,
} from "./lib/server.ts";
import { attack, ensureVegeta, matchedCpuRatio, saturate, writeTargets, type AttackResult, type SaturationResult, type Target } from "./lib/vegeta.ts";
import { runMixedLayouts, type MixedResult } from "./mixed.ts";

/** One steady (constant-rate) scenario, ours and the bare baseline's, with ratios. */
export interface SteadyResult {
  stack: string;
  scenario: string;
  /** features per request (entities x features) */
  features_per_request: number;
  response_bytes: number;
  rate: number;
  ours: AttackResult & { features_per_s: number; cache_hit_rate: number | null; stores_cpu_percent?: number; per_cpu_second?: number };
  bare?: AttackResult;
  /** ours / bare for latencies and CPU (1.0 = as fast as a bare server; bigger = slower) */
  ratio_to_bare?: { p50: number; p99: number; p999: number; max: number; server_cpu: number };
}

/** A saturation search, ours (and for online 1 x 10 the bare baseline's). */
export interface SaturationEntry {
  stack: string;
  scenario: string;
  features_per_request: number;
  ours: SaturationResult & { features_per_s: number };
  bare?: SaturationResult;
  /** ours / bare max throughput */
  ratio_to_bare?: number;
  /**
   * ours / bare answers per server CPU-second (the contention-robust form of the same ratio): at
   * the rates both searches ran (matchedCpuRatio), else of the two searches' medians
   */
  cpu_ratio_to_bare?: number;
  /** the rates cpu_ratio_to_bare was taken at (absent: the medians of the two searches) */
  cpu_ratio_rates?: number[];
}

export interface RedisBenchResult {
  command: string;
  clients: number;
  pipeline: number;
  requests: number;
  rps: number;
  p50_ms: number;
  p99_ms: number;
}

export interface LoadResults {
  machine: Record<string, string | number>;
  settings: typeof settings;
  loaded: Record<string, { values: number; seconds: number; values_per_s: number; retried_503?: number }>;
  steady: SteadyResult[];
  saturation: SaturationEntry[];
  redis_benchmark: RedisBenchResult[];
  /** our Redis-stack figures as ratios to redis-benchmark's closed-loop ceiling */
  ratio_to_redis_benchmark?: { online_1x10_rps: number | null; online_100x10_hmget_per_s: number | null };
  /** online 1x10 alone, then with training queries and writes in the background (bench/mixed.ts) */
  mixed?: MixedResult[];
  skipped: string[];
  load_average: { start: number; end: number };
}

/**
 * The previous run's load results with the parts this run measured replaced (a BENCH_ONLY run of
 * some stack parts, e.g. `mixed`): entries of the stacks that ran, for each part that ran.
 */
export function mergeLoad(prev: LoadResults, now: LoadResults): LoadResults {
  const ran = new Set([...(enabled("embedded") ? ["embedded"] : []), ...(enabled("redis") ? ["postgres+redis"] : [])]);
  const part = <T extends { stack: string }>(name: string, old: T[] | undefined, fresh: T[] | undefined): T[] =>
    enabled(name) ? [...(old ?? []).filter((x) => !ran.has(x.stack)), ...(fresh ?? [])] : (old ?? []);
  const steadyRan = enabled("steady") && ran.has("postgres+redis");
  // the Redis online 1x10 figure is judged against the bare server of its own run: kept while
  // the embedded one (which carries the bare baseline) is replaced, it keeps that run's bare
  const prevBare = prev.saturation.find((x) => x.stack === "embedded" && x.scenario === "online_1x10")?.bare;
  const withOwnBare = (xs: SaturationEntry[]): SaturationEntry[] =>
    xs.map((x) => (x.stack === "postgres+redis" && x.scenario === "online_1x10" && !x.bare && prevBare && !ran.has(x.stack) ? { ...x, bare: prevBare } : x));
  const kept = ["saturation", "steady", "mixed"].filter((p) => !enabled(p));
  return {
    ...now,
    loaded: { ...prev.loaded, ...now.loaded },
    saturation: withOwnBare(part("saturation", prev.saturation, now.saturation)),
    steady: part("steady", prev.steady, now.steady),
    mixed: part("mixed", prev.mixed, now.mixed),
    redis_benchmark: steadyRan ? now.redis_benchmark : prev.redis_benchmark,
    ratio_to_redis_benchmark: steadyRan ? now.ratio_to_redis_benchmark : prev.ratio_to_redis_benchmark,
    skipped: [...now.skipped.filter((x) => !x.includes("BENCH_SKIP/BENCH_ONLY")), ...(kept.length > 0 ? [`load parts ${kept.join(", ")}: kept from the previous run (${String(prev.machine.commit ?? "?").slice(0, 7)})`] : [])],
  };
}

const rnd = prng(12345);
const pick = (n: number): number => Math.floor(rnd() * n);

/** Targets for a scenario against our server, and the same bodies against the bare server. */
function targetsFor(server: Server, bodies: string[], path: string): Target[] {
  return bodies.map((body) => ({ method: "POST", url: `${server.url}${path}`, body, headers: { "x-api-key": server.key, "content-type": "application/json" } }));
}

function bareTargets(bare: Baseline, bodies: string[], bytes: number): Target[] {
  return bodies.map((body) => ({ method: "POST", url: `${bare.url}/bytes/${bytes}`, body, headers: { "content-type": "application/json" } }));
}

interface ScenarioDef {
  name: string;
  path: string;
  featuresPerRequest: number;
  bodies: string[];
  /** p99 bound of a passing saturation step, ms */
  p99Ms: number;
}

function scenarios(entities: number, days: number, now: number): ScenarioDef[] {
  const nOne = Math.min(20_000, entities);
  return [
    { name: "online_1x10", path: "/api/v1/features/online", featuresPerRequest: 10, p99Ms: settings.satP99Ms, bodies: Array.from({ length: nOne }, () => onlineOne(pick(entities))) },
    {
      name: "online_100x10",
      path: "/api/v1/features/online",
      featuresPerRequest: 1000,
      p99Ms: settings.satP99Ms * 4,
      bodies: Array.from({ length: 200 }, () => onlineMany(Array.from({ length: 100 }, () => pick(entities)))),
    },
    {
      name: "batch_pit_1000x10",
      path: "/api/v1/features/batch",
      featuresPerRequest: 10_000,
      p99Ms: settings.satP99Ms * 40,
      bodies: Array.from({ length: 40 }, () => batchRows(Array.from({ length: 1000 }, () => pick(entities)), days, now, rnd)),
    },
  ];
}

/** A steady run of ours then of the bare baseline at the same rate. */
async function steady(
  vegeta: string,
  stack: string,
  server: Server,
  bare: Baseline | undefined,
  sc: ScenarioDef,
  rate: number,
  storesPid?: number,
  warmupSeconds = settings.warmupSeconds,
): Promise<SteadyResult> {
  const sample = await post(server, sc.path, sc.bodies[0] as string);
  const bytes = Buffer.byteLength(sample);
  const file = writeTargets(`${stack}-${sc.name}`, targetsFor(server, sc.bodies, sc.path));
  log(`${stack} ${sc.name}: steady ${round(rate, 1)}/s for ${settings.seconds} s (response ${bytes} B)`);
  if (warmupSeconds > 0) await attack(vegeta, { name: "warmup", targetsFile: file, rate, seconds: warmupSeconds, discard: true, timeoutS: 5 });
  const c0 = await cacheCounters(server);
  const s0 = storesPid !== undefined ? familyCpuSeconds(storesPid) : 0;
  const t0 = performance.now();
  const ours = await attack(vegeta, { name: `${stack}-${sc.name}`, targetsFile: file, rate, seconds: settings.seconds, serverPid: server.pid });
  const storesCpu = storesPid !== undefined ? round(((familyCpuSeconds(storesPid) - s0) / ((performance.now() - t0) / 1000)) * 100, 1) : undefined;
  const c1 = await cacheCounters(server);
  const result: SteadyResult = {
    stack,
    scenario: sc.name,
    features_per_request: sc.featuresPerRequest,
    response_bytes: bytes,
    rate: round(rate, 1),
    ours: {
      ...ours,
      features_per_s: Math.round(ours.achieved_rps * sc.featuresPerRequest),
      cache_hit_rate: hitRate(c0, c1),
      ...(storesCpu !== undefined ? { stores_cpu_percent: storesCpu } : {}),
      ...(ours.server && ours.server.cpu_percent > 0 ? { per_cpu_second: round(ours.achieved_rps / (ours.server.cpu_percent / 100), 0) } : {}),
    },
  };
  log(`  ours: p50 ${ours.p50_ms} p99 ${ours.p99_ms} p99.9 ${ours.p999_ms} max ${ours.max_ms} ms, ${ours.achieved_rps}/s, errors ${ours.errors}, cpu ${ours.server?.cpu_percent}%, hit ${result.ours.cache_hit_rate}`);
  if (bare) {
    const bfile = writeTargets(`bare-${sc.name}`, bareTargets(bare, sc.bodies, bytes));
    if (warmupSeconds > 0) await attack(vegeta, { name: "warmup", targetsFile: bfile, rate, seconds: warmupSeconds, discard: true, timeoutS: 5 });
    const b = await attack(vegeta, { name: `bare-${sc.name}`, targetsFile: bfile, rate, seconds: settings.seconds, serverPid: bare.pid });
    result.bare = b;
    const r = (x: number, y: number): number => round(y > 0 ? x / y : Number.NaN, 2);
    result.ratio_to_bare = {
      p50: r(ours.p50_ms, b.p50_ms),
      p99: r(ours.p99_ms, b.p99_ms),
      p999: r(ours.p999_ms, b.p999_ms),
      max: r(ours.max_ms, b.max_ms),
      server_cpu: r(ours.server?.cpu_percent ?? Number.NaN, b.server?.cpu_percent ?? Number.NaN),
    };
    log(`  bare: p50 ${b.p50_ms} p99 ${b.p99_ms} p99.9 ${b.p999_ms} max ${b.max_ms} ms, cpu ${b.server?.cpu_percent}%`);
  }
  return result;
}

/** {@link SaturationEntry.cpu_ratio_to_bare} and its rates, for our search against a bare one. */
export function cpuRatios(ours: SaturationResult, bare: SaturationResult): { cpu_ratio_to_bare?: number; cpu_ratio_rates?: number[] } {
  const m = matchedCpuRatio(ours.steps, bare.steps);
  if (m) return { cpu_ratio_to_bare: round(m.ratio, 3), cpu_ratio_rates: m.rates };
  return ours.per_cpu_second && bare.per_cpu_second ? { cpu_ratio_to_bare: round(ours.per_cpu_second / bare.per_cpu_second, 3) } : {};
}

async function saturation(vegeta: string, stack: string, server: Server, sc: ScenarioDef, start: number, bare?: Baseline): Promise<SaturationEntry> {
  const file = writeTargets(`${stack}-${sc.name}`, targetsFor(server, sc.bodies, sc.path));
  log(`${stack} ${sc.name}: saturation search from ${start}/s`);
  await attack(vegeta, { name: "warmup", targetsFile: file, rate: start, seconds: settings.warmupSeconds || 1, discard: true, timeoutS: 5 });
  const ours = await saturate(vegeta, { name: `${stack}-${sc.name}`, targetsFile: file, start, stepSeconds: settings.stepSeconds, p99Ms: sc.p99Ms, serverPid: server.pid });
  const entry: SaturationEntry = { stack, scenario: sc.name, features_per_request: sc.featuresPerRequest, ours: { ...ours, features_per_s: ours.max_rps * sc.featuresPerRequest } };
  log(`  ${stack} ${sc.name}: saturated at ${ours.max_rps}/s (${entry.ours.features_per_s} features/s)`);
  if (bare) {
    const bytes = Buffer.byteLength(await post(server, sc.path, sc.bodies[0] as string));
    const bfile = writeTargets(`bare-${sc.name}`, bareTargets(bare, sc.bodies, bytes));
    await attack(vegeta, { name: "warmup", targetsFile: bfile, rate: start, seconds: settings.warmupSeconds || 1, discard: true, timeoutS: 5 });
    // from the same start, so both searches step through the same rates (the CPU ratio is taken
    // at rates both ran: matchedCpuRatio)
    const b = await saturate(vegeta, { name: `bare-${sc.name}`, targetsFile: bfile, start, stepSeconds: settings.stepSeconds, p99Ms: sc.p99Ms, serverPid: bare.pid });
    entry.bare = b;
    entry.ratio_to_bare = b.max_rps > 0 ? round(ours.max_rps / b.max_rps, 3) : undefined;
    Object.assign(entry, cpuRatios(ours, b));
    log(`  bare ${sc.name}: saturated at ${b.max_rps}/s${b.generator_bound ? " (load generator bound: a lower bound)" : ""}; ratio ${entry.ratio_to_bare}; per CPU-second at the same rates (${entry.cpu_ratio_rates?.join(", ") ?? "none"}/s) ${entry.cpu_ratio_to_bare}; medians of each search ${ours.per_cpu_second} vs ${b.per_cpu_second}`);
  }
  return entry;
}

// ───────────────────────────── redis-benchmark ─────────────────────────────

async function redisBenchmark(redis: RedisService, key: string, fields: string[], pipeline: number): Promise<RedisBenchResult | undefined> {
  const rb = Bun.which("redis-benchmark");
  if (rb === null) return undefined;
  const requests = pipeline > 1 ? 1_000_000 : 200_000;
  const out = await run(pinned("generator", [rb, "-h", "127.0.0.1", "-p", String(redis.port), "-c", "50", "-n", String(requests), "-P", String(pipeline), "--csv", "HMGET", key, ...fields]), {
    timeoutMs: 120_000,
  });
  // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
  const lines = out.trim().split("\n");
  const last = (lines[lines.length - 1] ?? "").split(",").map((s) => s.replace(/"/g, ""));
  return { command: `HMGET key <${fields.length} fields>`, clients: 50, pipeline, requests, rps: Number(last[1]), p50_ms: Number(last[4]), p99_ms: Number(last[6]) };
}

async function someEntityKey(redis: RedisService): Promise<{ key: string; fields: string[] } | undefined> {
  const cli = Bun.which("redis-cli");
  if (cli === null) return undefined;
  const keys = (await run([cli, "-p", String(redis.port), "--scan", "--pattern", "fs:{*"], { timeoutMs: 30_000 })).trim().split("\n").filter(Boolean);
  const key = keys[0];
  if (key === undefined) return undefined;
  const fields = (await run([cli, "-p", String(redis.port), "HKEYS", key])).trim().split("\n").filter(Boolean);
  return { key, fields };
}

async function redisUsedMemory(redis: RedisService): Promise<number> {
  const info = await redisCommand(redis.port, ["INFO", "memory"]);
  return Number(/used_memory:(\d+)/.exec(info)?.[1] ?? Number.NaN);
}

// ───────────────────────────── stacks ─────────────────────────────

interface StackRun {
  steady: SteadyResult[];
  saturation: SaturationEntry[];
  loaded: { values: number; seconds: number; values_per_s: number; retried_503?: number };
  redis_benchmark: RedisBenchResult[];
  mixed: MixedResult[];
  errors: string[];
}

function newRun(): StackRun {
  return { steady: [], saturation: [], loaded: { values: 0, seconds: 0, values_per_s: 0 }, redis_benchmark: [], mixed: [], errors: [] };
}

/** Runs one stack's scenarios, appending to `out` as it goes (partial results survive a failure). */
async function runStack(vegeta: string, bin: string, name: string, env: StackEnv, bare: Baseline | undefined, out: StackRun, extra: { redis?: RedisService; pg?: PgService } = {}): Promise<StackRun> {
  const now = Date.now();
  const server = await startServer(bin, env, name);
  const storesPid = extra.pg ? postmasterPid(extra.pg.dir) : undefined;
  try {
    log(`${name}: loading ${settings.entities} entities x 10 features x ${settings.historyDays} days over HTTP`);
    out.loaded = await loadData(server, settings.entities, settings.historyDays, now);
    log(`${name}: loaded ${out.loaded.values} values in ${out.loaded.seconds} s (${out.loaded.values_per_s}/s)`);
    const [one, many, batch] = scenarios(settings.entities, settings.historyDays, now) as [ScenarioDef, ScenarioDef, ScenarioDef];

    if (enabled("saturation")) {
      out.saturation.push(await saturation(vegeta, name, server, one, 2000, name === "embedded" ? bare : undefined));
      out.saturation.push(await saturation(vegeta, name, server, many, 100));
      out.saturation.push(await saturation(vegeta, name, server, batch, 5));
    }
    const satOf = (sc: string): number | undefined => out.saturation.find((s) => s.scenario === sc)?.ours.max_rps;
    if (enabled("steady")) {
      out.steady.push(await steady(vegeta, name, server, bare, one, settings.rate1x10, storesPid));
      out.steady.push(await steady(vegeta, name, server, bare, many, Math.max(10, (satOf(many.name) ?? 400) / 2), storesPid));
      out.steady.push(await steady(vegeta, name, server, bare, batch, Math.max(1, (satOf(batch.name) ?? 10) / 2), storesPid));
    }

    if (enabled("mixed")) {
      const storePids = [...(storesPid === undefined ? [] : [storesPid]), ...(extra.redis ? [await redisPid(extra.redis)] : [])];
      out.mixed.push(...(await runMixedLayouts(vegeta, name, server, storePids, settings.entities, settings.historyDays, now)));
    }
    if (extra.redis && enabled("steady")) await redisExtras(vegeta, name, server, extra.redis, one, out, storesPid, satOf);
  } finally {
    await server.stop();
  }
  return out;
}

/** redis-benchmark ceiling and the Zipf mix with Redis memory capped (failures are logged, not fatal). */
async function redisExtras(
  vegeta: string,
  name: string,
  server: Server,
  redis: RedisService,
  one: ScenarioDef,
  out: StackRun,
  storesPid: number | undefined,
  satOf: (sc: string) => number | undefined,
): Promise<void> {
  try {
    {
      const sample = await someEntityKey(redis);
      if (sample) {
        log(`redis-benchmark HMGET (closed loop, 50 clients) on ${sample.key}`);
        for (const p of [1, 100]) {
          const r = await redisBenchmark(redis, sample.key, sample.fields, p);
          if (r) {
            out.redis_benchmark.push(r);
            log(`  pipeline ${p}: ${r.rps} HMGET/s, p50 ${r.p50_ms} ms, p99 ${r.p99_ms} ms`);
          }
        }
      }
      // Zipf key mix with Redis capped below the data set
      const used = await redisUsedMemory(redis);
      const cap = Math.max(4 * 2 ** 20, Math.floor(used * 0.3));
      log(`zipf: Redis holds ${(used / 2 ** 20).toFixed(1)} MiB; capping maxmemory at ${(cap / 2 ** 20).toFixed(1)} MiB, volatile-lru (every cache key has an expiry; the generation key has none and is never evicted)`);
      await redisCommand(redis.port, ["CONFIG", "SET", "maxmemory-policy", "volatile-lru"]);
      await redisCommand(redis.port, ["CONFIG", "SET", "maxmemory", String(cap)]);
      const zipf = zipfSampler(settings.entities, Number(process.env.BENCH_ZIPF_S ?? 1.0), rnd);
      const zsc: ScenarioDef = { name: "online_1x10_zipf_capped", path: "/api/v1/features/online", featuresPerRequest: 10, p99Ms: settings.satP99Ms, bodies: Array.from({ length: 50_000 }, () => onlineOne(zipf())) };
      const rate = Math.min(settings.rate1x10, Math.max(100, (satOf(one.name) ?? settings.rate1x10) * 0.5));
      const z = await steady(vegeta, name, server, undefined, zsc, rate, storesPid, Math.max(settings.warmupSeconds, 5));
      const info = await redisCommand(redis.port, ["INFO", "stats"]);
      (z as SteadyResult & { redis?: Record<string, unknown> }).redis = {
        maxmemory_mib: round(cap / 2 ** 20, 1),
        full_data_set_mib: round(used / 2 ** 20, 1),
        evicted_keys: Number(/evicted_keys:(\d+)/.exec(info)?.[1] ?? Number.NaN),
        zipf_s: Number(process.env.BENCH_ZIPF_S ?? 1.0),
        distinct_entities: settings.entities,
      };
      out.steady.push(z);
      await redisCommand(redis.port, ["CONFIG", "SET", "maxmemory", "0"]);
    }
  } catch (e) {
    log(`${name}: redis-benchmark / Zipf part failed: ${(e as Error).message}`);
    out.errors.push(`redis-benchmark / Zipf: ${(e as Error).message.split("\n")[0]}`);
  }
}

/** Runs the whole load benchmark and returns its results (also used by bench/run.ts). */
export async function runLoad(opts: { bin?: string; vegeta?: string } = {}): Promise<LoadResults> {
  const machine = machineInfo();
  const la0 = loadAverage();
  const vegeta = opts.vegeta ?? (await ensureVegeta());
  const bin = opts.bin ?? (await buildBinary());
  ensureDir(TMP_DIR);
  const results: LoadResults = { machine, settings, loaded: {}, steady: [], saturation: [], redis_benchmark: [], skipped: [], load_average: { start: la0, end: 0 } };
  const bare = await startBaseline();
  try {
    if (enabled("embedded")) {
      const dataDir = mkdtempSync(join(tmpdir(), "fs-bench-embedded-"));
      const r = newRun();
      try {
        await runStack(vegeta, bin, "embedded", { DATA_DIR: dataDir }, bare, r);
      } catch (e) {
        log(`embedded stack failed: ${(e as Error).message}`);
        r.errors.push(`embedded stack: ${(e as Error).message.split("\n")[0]}`);
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
        results.steady.push(...r.steady);
        results.saturation.push(...r.saturation);
        results.loaded.embedded = r.loaded;
        (results.mixed ??= []).push(...r.mixed);
        results.skipped.push(...r.errors);
      }
    } else results.skipped.push("embedded stack (BENCH_SKIP/BENCH_ONLY)");

    if (enabled("redis")) {
      let pg: PgService | undefined;
      let redis: RedisService | undefined;
      const r = newRun();
      try {
        log("starting PostgreSQL and Redis (test harness)");
        [pg, redis] = await Promise.all([startPostgres({ settings: { shared_buffers: "256MB" } }), startRedis()]);
        const pm = postmasterPid(pg.dir);
        if (pm !== undefined) await pinToServerCore(pm);
        await pinToServerCore(await redisPid(redis));
        await runStack(vegeta, bin, "postgres+redis", { POSTGRES_URL: pg.url, REDIS_URL: redis.url }, bare, r, { redis, pg });
      } catch (e) {
        log(`postgres+redis stack failed: ${(e as Error).message}`);
        r.errors.push(`postgres+redis stack: ${(e as Error).message.split("\n")[0]}`);
      } finally {
        await Promise.all([pg?.stop(), redis?.stop()]);
        results.steady.push(...r.steady);
        results.saturation.push(...r.saturation);
        results.redis_benchmark.push(...r.redis_benchmark);
        results.loaded["postgres+redis"] = r.loaded;
        (results.mixed ??= []).push(...r.mixed);
        results.skipped.push(...r.errors);
      }
    } else results.skipped.push("postgres+redis stack (BENCH_SKIP/BENCH_ONLY)");
  } finally {
    await bare.stop();
  }
  const rb1 = results.redis_benchmark.find((r) => r.pipeline === 1);
  const rb100 = results.redis_benchmark.find((r) => r.pipeline === 100);
  const sat1 = results.saturation.find((s) => s.stack === "postgres+redis" && s.scenario === "online_1x10");
  const sat100 = results.saturation.find((s) => s.stack === "postgres+redis" && s.scenario === "online_100x10");
  if (rb1 || rb100) {
    results.ratio_to_redis_benchmark = {
      online_1x10_rps: rb1 && sat1 ? round(sat1.ours.max_rps / rb1.rps, 3) : null,
      online_100x10_hmget_per_s: rb100 && sat100 ? round((sat100.ours.max_rps * 100) / rb100.rps, 3) : null,
    };
  }
  results.load_average.end = loadAverage();
  return results;
}

if (import.meta.main) {
  const { writeResults } = await import("./lib/report.ts");
  const load = await runLoad();
  const files = writeResults({ load });
  log(`wrote ${files.join(", ")}`);
  process.exit(0);
}


