/**
 * The mixed workload (`bun bench/mixed.ts`; also a step of `bun run bench:load`): online 1 x 10
 * lookups at a fixed rate (vegeta, open loop), first alone, then, in the same run on the same
 * server, with training queries (point-in-time batches of BENCH_MIXED_BATCH_ROWS rows x 10
 * features) and bulk writes (BENCH_MIXED_WRITE_RECORDS records x 10 features) running back to
 * back in the background. Reports p50, p99, p99.9, max and errors of the online requests in
 * both phases and their ratio (the target: p99 with the background <= 3x p99 alone, 0 errors),
 * and what the background got done.
 *
 * Standalone, it runs the stacks BENCH_ONLY/BENCH_SKIP allow (embedded, redis) against
 * BENCH_BINARY (default: builds dist/feature-store) and writes bench/results/mixed.{json,md}.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startPostgres, startRedis, type PgService, type RedisService } from "../test/harness/services.ts";
import { cpuSeconds, enabled, ensureDir, gitCommit, loadAverage, log, machineInfo, num, pinningActive, RESULTS_DIR, round, settings } from "./lib/common.ts";
import { batchRows, ENTITY_TYPE, onlineOne, prng, record } from "./lib/dataset.ts";
import { mixedMarkdown } from "./lib/report.ts";
import { buildBinary, freeCores, loadData, postmasterPid, redisPid, startServer, type Server, type StackEnv } from "./lib/server.ts";
import { attack, ensureVegeta, writeTargets, type AttackResult } from "./lib/vegeta.ts";

/** Knobs of the mixed workload. */
export const mixedSettings = {
  /** Offered rate of the online 1 x 10 lookups, requests/s. */
  rate: num("BENCH_MIXED_RATE", 1000),
  /** Rows (x 10 features) of each background training query. */
  batchRows: num("BENCH_MIXED_BATCH_ROWS", 20_000),
  /** Records (x 10 features) of each background write. */
  writeRecords: num("BENCH_MIXED_WRITE_RECORDS", 2_000),
  /** Which background loops run: `batch`, `write` or both (comma list; default both). */
  background: (process.env.BENCH_MIXED_BACKGROUND ?? "batch,write").split(",").map((s) => s.trim()).filter(Boolean),
} as const;

/** What the background got done during the measured phase. */
export interface Background {
  batches: number;
  batch_rows_per_s: number;
  writes: number;
  write_values_per_s: number;
  /** bulk requests refused with 503 (bulk-lane admission), and any other failure */
  shed_503: number;
  failed: number;
  /** median seconds of one training query / one write */
  batch_s_p50: number;
  write_s_p50: number;
}

/** One stack's mixed-workload result. */
export interface MixedResult {
  stack: string;
  /**
   * Where the processes ran: "free" (every process on every core, as in a user's deployment),
   * "one core" (BENCH_PIN: the server and its stores pinned to one core, the load generator to
   * another: a stress layout where PostgreSQL, Redis and the server share one core).
   */
  layout?: "free" | "one core";
  rate: number;
  /** rows of one background training query, records of one background write (x 10 features each) */
  batch_rows: number;
  write_records: number;
  seconds: number;
  alone: AttackResult;
  with_background: AttackResult;
  background: Background;
  /** online requests the server shed during the phase with the background, by reason (feature_store_http_requests_shed_total) */
  shed_by_reason: Record<string, number>;
  /** online cache lookups by result (hit, miss, error) per phase: misses with the background are values read from the database again */
  cache: { alone: Record<string, number>; with_background: Record<string, number> };
  /** CPU of the serving (main) thread and of the whole server process, % of one core, per phase */
  cpu: { alone: { main_thread: number; process: number }; with_background: { main_thread: number; process: number } };
  /** with background / alone */
  ratio: { p50: number; p99: number; p999: number };
}

/** feature_store_http_requests_shed_total by reason, from the server's /metrics. */
async function shedCounts(server: Server): Promise<Record<string, number>> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^feature_store_http_requests_shed_total\{reason="(\w+)"\} (\S+)$/gm)) out[m[1] as string] = Number(m[2]);
  return out;
}

/** feature_store_cache_requests_total by result (hit, miss, error), from the server's /metrics. */
async function cacheCounts(server: Server): Promise<Record<string, number>> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^feature_store_cache_requests_total\{result="(\w+)"[^}]*\} (\S+)$/gm)) out[m[1] as string] = (out[m[1] as string] ?? 0) + Number(m[2]);
  return out;
}

const since = (a: Record<string, number>, b: Record<string, number>): Record<string, number> =>
  Object.fromEntries(Object.entries(b).map(([k, v]) => [k, v - (a[k] ?? 0)]));

/** CPU seconds of the serving thread and of the process, and when they were read. */
function cpuNow(pid: number): { main: number; all: number; at: number } {
  return { main: cpuSeconds(pid, pid), all: cpuSeconds(pid), at: performance.now() };
}

function cpuSince(pid: number, t0: { main: number; all: number; at: number }): { main_thread: number; process: number } {
  const t1 = cpuNow(pid);
  const secs = (t1.at - t0.at) / 1000;
  return { main_thread: round(((t1.main - t0.main) / secs) * 100, 1), process: round(((t1.all - t0.all) / secs) * 100, 1) };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : (s[Math.floor(s.length / 2)] as number);
};

/** Training queries and writes back to back until `stop()`; each loop reads every answer to its end. */
export function startBackground(server: Pick<Server, "url" | "key">, entities: number, days: number, now: number, kinds: readonly string[] = mixedSettings.background): { stop(): Promise<Background> } {
  const rnd = prng(777);
  const pick = () => Math.floor(rnd() * entities);
  const batchBodies = Array.from({ length: 3 }, () => batchRows(Array.from({ length: mixedSettings.batchRows }, pick), days, now, rnd));
  let writeRound = 0;
  const writeBody = () => {
    // A day after the loaded history, a new event time per round: every write stores new values.
    const t = now + 60_000 + writeRound++;
    const start = pick();
    const records = Array.from({ length: mixedSettings.writeRecords }, (_, k) => ({ ...record((start + k) % entities, days - 1, days, now), event_time: new Date(t).toISOString() }));
    return JSON.stringify({ entity_type: ENTITY_TYPE, records });
  };
  let running = true;
  let t0 = 0;
  const b = { batches: 0, writes: 0, shed: 0, failed: 0, batchS: [] as number[], writeS: [] as number[] };
  const call = async (path: string, body: string): Promise<boolean> => {
    const r = await fetch(`${server.url}${path}`, { method: "POST", body, headers: { "content-type": "application/json", "x-api-key": server.key } });
    await r.arrayBuffer();
    if (r.status === 503) {
      b.shed++;
      await Bun.sleep(Number(r.headers.get("retry-after") ?? 1) * 1000);
    } else if (!r.ok) b.failed++;
    return r.ok;
  };
  const loop = async (path: string, body: () => string, done: () => void, times: number[]) => {
    while (running) {
      const s = performance.now();
      try {
        if (await call(path, body())) {
          if (t0 > 0) {
            done();
            times.push((performance.now() - s) / 1000);
          }
        }
      } catch {
        b.failed++;
      }
    }
  };
  let n = 0;
  const loops = [
    ...(kinds.includes("batch") ? [loop("/api/v1/features/batch", () => batchBodies[n++ % batchBodies.length] as string, () => b.batches++, b.batchS)] : []),
    ...(kinds.includes("write") ? [loop("/api/v1/features/write", writeBody, () => b.writes++, b.writeS)] : []),
  ];
  t0 = performance.now();
  return {
    stop: async () => {
      const secs = (performance.now() - t0) / 1000;
      running = false;
      const counted = { ...b, batchS: [...b.batchS], writeS: [...b.writeS] };
      await Promise.all(loops);
      return {
        batches: counted.batches,
        batch_rows_per_s: round((counted.batches * mixedSettings.batchRows) / secs, 0),
        writes: counted.writes,
        write_values_per_s: round((counted.writes * mixedSettings.writeRecords * 10) / secs, 0),
        shed_503: counted.shed,
        failed: counted.failed,
        batch_s_p50: round(median(counted.batchS), 2),
        write_s_p50: round(median(counted.writeS), 2),
      };
    },
  };
}

/** The mixed workload on a running, loaded server. */
export async function runMixed(vegeta: string, stack: string, server: Server, entities: number, days: number, now: number, layout: MixedResult["layout"] = "free"): Promise<MixedResult> {
  const rnd = prng(4711);
  const bodies = Array.from({ length: Math.min(20_000, entities) }, () => onlineOne(Math.floor(rnd() * entities)));
  const file = writeTargets(`${stack}-mixed-online`, bodies.map((body) => ({ method: "POST" as const, url: `${server.url}/api/v1/features/online`, body, headers: { "x-api-key": server.key, "content-type": "application/json" } })));
  const rate = mixedSettings.rate;
  log(`${stack} mixed (${layout}): online 1x10 at ${rate}/s for ${settings.seconds} s alone`);
  if (settings.warmupSeconds > 0) await attack(vegeta, { name: "warmup", targetsFile: file, rate, seconds: settings.warmupSeconds, discard: true, timeoutS: 5 });
  const cache0 = await cacheCounts(server);
  const cpu0 = cpuNow(server.pid);
  const alone = await attack(vegeta, { name: `${stack}-mixed-alone`, targetsFile: file, rate, seconds: settings.seconds, serverPid: server.pid });
  const cpuAlone = cpuSince(server.pid, cpu0);
  log(`  alone: p50 ${alone.p50_ms} p99 ${alone.p99_ms} p99.9 ${alone.p999_ms} max ${alone.max_ms} ms, errors ${alone.errors}`);
  log(`${stack} mixed: the same with ${mixedSettings.batchRows}-row training queries and ${mixedSettings.writeRecords}-record writes back to back`);
  const shed0 = await shedCounts(server);
  const cache1 = await cacheCounts(server);
  const bg = startBackground(server, entities, days, now);
  let withBg: AttackResult;
  let background: Background;
  let cpuBg: { main_thread: number; process: number };
  try {
    const cpu1 = cpuNow(server.pid);
    withBg = await attack(vegeta, { name: `${stack}-mixed-bg`, targetsFile: file, rate, seconds: settings.seconds, serverPid: server.pid });
    cpuBg = cpuSince(server.pid, cpu1);
  } finally {
    background = await bg.stop();
  }
  log(`  CPU, % of one core (serving thread / whole process): alone ${cpuAlone.main_thread} / ${cpuAlone.process}, with background ${cpuBg.main_thread} / ${cpuBg.process}`);
  log(`  with background: p50 ${withBg.p50_ms} p99 ${withBg.p99_ms} p99.9 ${withBg.p999_ms} max ${withBg.max_ms} ms, errors ${withBg.errors} ${JSON.stringify(withBg.top_errors)}`);
  const shed1 = await shedCounts(server);
  const cache2 = await cacheCounts(server);
  const cache = { alone: since(cache0, cache1), with_background: since(cache1, cache2) };
  log(`  online cache lookups: alone ${JSON.stringify(cache.alone)}, with background ${JSON.stringify(cache.with_background)}`);
  const shedByReason = Object.fromEntries(Object.entries(shed1).map(([k, v]) => [k, v - (shed0[k] ?? 0)]).filter(([, v]) => (v as number) > 0));
  log(`  background: ${JSON.stringify(background)}; online shed by reason: ${JSON.stringify(shedByReason)}`);
  const r = (x: number, y: number) => round(y > 0 ? x / y : Number.NaN, 2);
  return {
    stack,
    layout,
    rate,
    batch_rows: mixedSettings.batchRows,
    write_records: mixedSettings.writeRecords,
    seconds: settings.seconds,
    alone,
    with_background: withBg,
    background,
    shed_by_reason: shedByReason,
    cache,
    cpu: { alone: cpuAlone, with_background: cpuBg },
    ratio: { p50: r(withBg.p50_ms, alone.p50_ms), p99: r(withBg.p99_ms, alone.p99_ms), p999: r(withBg.p999_ms, alone.p999_ms) },
  };
}

/** Seconds between the layouts: the first one's background leaves work behind (autovacuum, WAL checkpoints). */
const SETTLE_SECONDS = num("BENCH_MIXED_SETTLE_SECONDS", 10);

/**
 * The mixed workload in each layout on a running, loaded server: first "free" (every process,
 * the load generator too, on every core: the judged layout), then with pinning on (BENCH_PIN)
 * "one core" (the server and the store processes `storePids` on the server core, the generator
 * on its own), after a pause so the first background's aftermath does not land in the second's
 * "alone" phase. The server and stores end pinned to the server core (freeCores' repin), which is
 * the one-core layout.
 */
export async function runMixedLayouts(vegeta: string, stack: string, server: Server, storePids: number[], entities: number, days: number, now: number): Promise<MixedResult[]> {
  const out: MixedResult[] = [];
  const pin = pinningActive();
  const freed = await freeCores([server.pid, ...storePids]);
  try {
    out.push(await runMixed(vegeta, stack, server, entities, days, now, "free"));
  } finally {
    await freed.repin();
  }
  if (pin) {
    log(`${stack} mixed: ${SETTLE_SECONDS} s pause before the one-core layout`);
    await Bun.sleep(SETTLE_SECONDS * 1000);
    out.push(await runMixed(vegeta, stack, server, entities, days, now, "one core"));
  }
  return out;
}

/** Starts a stack, loads it, runs the mixed workload in each layout, stops it. */
async function runStandalone(vegeta: string, bin: string, name: string, env: StackEnv, storePids: number[] = []): Promise<MixedResult[]> {
  const now = Date.now();
  const server = await startServer(bin, env, `${name}-mixed`);
  try {
    log(`${name}: loading ${settings.entities} entities x 10 features x ${settings.historyDays} days`);
    await loadData(server, settings.entities, settings.historyDays, now);
    return await runMixedLayouts(vegeta, name, server, storePids, settings.entities, settings.historyDays, now);
  } finally {
    await server.stop();
  }
}

if (import.meta.main) {
  const la0 = loadAverage();
  const vegeta = await ensureVegeta();
  const bin = await buildBinary();
  const results: MixedResult[] = [];
  if (enabled("embedded")) {
    const dataDir = mkdtempSync(join(tmpdir(), "fs-bench-mixed-"));
    try {
      results.push(...(await runStandalone(vegeta, bin, "embedded", { DATA_DIR: dataDir })));
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  }
  if (enabled("redis")) {
    let pg: PgService | undefined;
    let redis: RedisService | undefined;
    try {
      [pg, redis] = await Promise.all([startPostgres({ settings: { shared_buffers: "256MB" } }), startRedis()]);
      const pm = postmasterPid(pg.dir);
      const storePids = [...(pm === undefined ? [] : [pm]), await redisPid(redis)];
      results.push(...(await runStandalone(vegeta, bin, "postgres+redis", { POSTGRES_URL: pg.url, REDIS_URL: redis.url }, storePids)));
    } finally {
      await Promise.all([pg?.stop(), redis?.stop()]);
    }
  }
  const machine = machineInfo();
  const head = [
    "# Mixed workload (bench/mixed.ts)",
    "",
    `Binary: ${bin}. Commit \`${gitCommit()}\`. ${machine.nproc} cores (${machine.cpu_model}). Load average (1 min) at start / end: ${la0} / ${loadAverage()}. BENCH_SECONDS=${settings.seconds}, BENCH_ENTITIES=${settings.entities}.`,
    "",
  ];
  ensureDir(RESULTS_DIR);
  const name = process.env.BENCH_MIXED_OUT ?? "mixed";
  writeFileSync(join(RESULTS_DIR, `${name}.json`), `${JSON.stringify({ machine, generated_at: new Date().toISOString(), bin, settings: mixedSettings, results }, null, 2)}\n`);
  writeFileSync(join(RESULTS_DIR, `${name}.md`), `${[...head, ...mixedMarkdown(results)].join("\n")}\n`);
  log(`wrote bench/results/${name}.{json,md}`);
  process.exit(0);
}
