/**
 * Looks for periodic stalls of the serving thread (`bun bench/stall.ts`): online 1 x 10 at a
 * fixed rate (BENCH_STALL_RATE, default 500/s) for BENCH_SECONDS against BENCH_BINARY (default:
 * builds dist/feature-store), embedded unless BENCH_ONLY=redis. Every request's start time and
 * latency come from `vegeta encode --to csv`; requests are bucketed by their start time modulo
 * one second (20 buckets of 50 ms): a timer with a 1 s period shows as one bucket whose p99 and
 * slow-request count stand out from the others. With `BUN_JSC_logGC=1` in the environment the
 * server logs every garbage collection (bench/results/tmp/server-embedded-stall.log): `bun
 * bench/gc-log.ts` on that file lists them (session 10: the stall was the eden collections).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startPostgres, startRedis, type PgService, type RedisService } from "../test/harness/services.ts";
import { loadAverage, log, num, settings } from "./lib/common.ts";
import { onlineOne, prng } from "./lib/dataset.ts";
import { buildBinary, loadData, startServer, type StackEnv } from "./lib/server.ts";
import { ensureVegeta, writeTargets } from "./lib/vegeta.ts";

const rate = num("BENCH_STALL_RATE", 500);
/** a request slower than this is "slow", ms */
const slowMs = num("BENCH_STALL_SLOW_MS", 5);

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))] as number;
}

async function run(stack: string, env: StackEnv): Promise<void> {
  const vegeta = await ensureVegeta();
  const bin = settings.binary ?? (await buildBinary());
  const server = await startServer(bin, env, `${stack}-stall`);
  try {
    const now = Date.now();
    await loadData(server, settings.entities, settings.historyDays, now);
    const rnd = prng(4711);
    const bodies = Array.from({ length: Math.min(20_000, settings.entities) }, () => onlineOne(Math.floor(rnd() * settings.entities)));
    const file = writeTargets(`${stack}-stall`, bodies.map((body) => ({ method: "POST" as const, url: `${server.url}/api/v1/features/online`, body, headers: { "x-api-key": server.key, "content-type": "application/json" } })));
    const la0 = loadAverage();
    log(`${stack}: online 1x10 at ${rate}/s for ${settings.seconds} s, load average ${la0}`);
    const attack = Bun.spawn([vegeta, "attack", "-format=json", `-targets=${file}`, `-rate=${rate}`, `-duration=${settings.seconds}s`, "-timeout=5s", "-max-workers=64"], { stdout: "pipe", stderr: "inherit" });
    const enc = Bun.spawn([vegeta, "encode", "--to", "csv"], { stdin: attack.stdout, stdout: "pipe", stderr: "inherit" });
    const csv = await new Response(enc.stdout).text();
    await attack.exited;
    const buckets = Array.from({ length: 20 }, () => [] as number[]);
    const all: number[] = [];
    const slowAt: number[] = [];
    let errors = 0;
    for (const line of csv.split("\n")) {
      if (line === "") continue;
      const [ts, code, lat] = line.split(",");
      const startNs = BigInt(ts as string);
      const ms = Number(lat) / 1e6;
      if (code !== "200") errors++;
      const frac = Number(startNs % 1_000_000_000n) / 1e9;
      (buckets[Math.floor(frac * 20)] as number[]).push(ms);
      all.push(ms);
      if (ms > slowMs) slowAt.push(frac);
    }
    log(`${stack}: ${all.length} requests, ${errors} errors, p50 ${pct(all, 0.5).toFixed(2)} p99 ${pct(all, 0.99).toFixed(2)} p99.9 ${pct(all, 0.999).toFixed(2)} ms; ${slowAt.length} slower than ${slowMs} ms; load average ${la0} -> ${loadAverage()}`);
    console.log("| start mod 1 s | requests | p50 ms | p99 ms | max ms | slower than " + slowMs + " ms |");
    console.log("| --- | ---: | ---: | ---: | ---: | ---: |");
    buckets.forEach((b, i) => {
      const slow = b.filter((x) => x > slowMs).length;
      console.log(`| .${String(i * 50).padStart(3, "0")}-.${String(i * 50 + 49).padStart(3, "0")} | ${b.length} | ${pct(b, 0.5).toFixed(2)} | ${pct(b, 0.99).toFixed(2)} | ${Math.max(...b).toFixed(1)} | ${slow} |`);
    });
  } finally {
    await server.stop();
  }
}

if (import.meta.main) {
  if (process.env.BENCH_ONLY === "redis") {
    let pg: PgService | undefined;
    let redis: RedisService | undefined;
    try {
      [pg, redis] = await Promise.all([startPostgres({}), startRedis()]);
      await run("postgres+redis", { POSTGRES_URL: pg.url, REDIS_URL: redis.url });
    } finally {
      await Promise.all([pg?.stop(), redis?.stop()]);
    }
  } else {
    const dataDir = mkdtempSync(join(tmpdir(), "fs-bench-stall-"));
    try {
      await run("embedded", { DATA_DIR: dataDir });
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  }
  process.exit(0);
}
