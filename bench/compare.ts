/**
 * A/B comparison of builds: `bun bench/compare.ts NAME=BINARY NAME=BINARY ...`
 *
 * For each binary (embedded stack, BENCH_ENTITIES entities loaded over HTTP): online 1 x 10 at
 * COMPARE_RATE_1X10/s (default 2000) and online 100 x 10 at COMPARE_RATE_100X10/s (default 50)
 * for BENCH_SECONDS, repeated COMPARE_ROUNDS times in alternation (A B A B ...), reporting the
 * server's CPU per request (microseconds of CPU, user + system, all threads) and p50/p99. CPU per
 * request at a fixed rate is the figure to compare on a shared machine: other processes make
 * latencies noisy but barely change how much CPU one request costs.
 *
 * `bare` as a build (e.g. `bun bench/compare.ts A=dist/feature-store bare`) measures the bare
 * Bun.serve baseline (bench/baseline-server.ts) answering bodies of the same sizes, in the same
 * rounds: the ratio of CPU per request to it is the hot-path target of issue 12.
 *
 * COMPARE_STACK=redis runs the builds on PostgreSQL + Redis (started by the test harness; a new
 * database and an emptied Redis for every build and round) instead of the embedded stack; the
 * CPU counted is still the server's alone. COMPARE_WARM_ALL=1 asks every body once before
 * measuring (caches filled by reads are then measured warm).
 *
 * Build a scratch copy with a proposed change: `cp -r src /tmp/x/src` ..., then
 * `OUTFILE=/tmp/x.bin bun scripts/build.ts` from that tree.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildsOf, log, round, settings } from "./lib/common.ts";
import { onlineMany, onlineOne, prng } from "./lib/dataset.ts";
import { loadData, post, startBaseline, startServer, type Server, type StackEnv } from "./lib/server.ts";
import { redisCommand, startPostgres, startRedis, type PgService, type RedisService } from "../test/harness/services.ts";
import { attack, ensureVegeta, writeTargets } from "./lib/vegeta.ts";

const builds = buildsOf(process.argv.slice(2), "bun bench/compare.ts NAME=BINARY [NAME=BINARY ...]");
const rounds = Number(process.env.COMPARE_ROUNDS ?? 2);
const rate1 = Number(process.env.COMPARE_RATE_1X10 ?? 2000);
const rate100 = Number(process.env.COMPARE_RATE_100X10 ?? 50);
const stackName = process.env.COMPARE_STACK ?? "embedded";
if (stackName !== "embedded" && stackName !== "redis") {
  console.error("COMPARE_STACK: embedded or redis");
  process.exit(2);
}
let pg: PgService | undefined;
let redis: RedisService | undefined;
if (stackName === "redis") [pg, redis] = await Promise.all([startPostgres({ settings: { shared_buffers: "256MB" } }), startRedis()]);
/** A fresh stack for one build's round: a data dir, or a new database and an emptied Redis. */
async function freshStack(dir: string): Promise<StackEnv> {
  if (!pg || !redis) return { DATA_DIR: dir };
  await redisCommand(redis.port, ["FLUSHALL"]);
  return { POSTGRES_URL: await pg.createDatabase(), REDIS_URL: redis.url };
}
const entities = Math.min(settings.entities, 20_000);
const vegeta = await ensureVegeta();
const rnd = prng(5);
const pick = (): number => Math.floor(rnd() * entities);
const bodies1 = Array.from({ length: 5000 }, () => onlineOne(pick()));
const bodies100 = Array.from({ length: 200 }, () => onlineMany(Array.from({ length: 100 }, pick)));

interface Row {
  build: string;
  scenario: string;
  cpu_us_per_req: number;
  p50_ms: number;
  p99_ms: number;
  achieved: number;
}
const rows: Row[] = [];

/** Response sizes of each scenario (from the first feature-store build measured), for the bare server. */
const responseBytes = new Map<string, number>();

async function measure(name: string, server: Pick<Server, "url" | "pid"> & { key?: string }, scenario: string, bodies: string[], rate: number): Promise<void> {
  const bytes = responseBytes.get(scenario);
  const targets =
    server.key === undefined
      ? bodies.map((body) => ({ method: "POST" as const, url: `${server.url}/bytes/${bytes}`, body, headers: { "content-type": "application/json" } }))
      : bodies.map((body) => ({ method: "POST" as const, url: `${server.url}/api/v1/features/online`, body, headers: { "x-api-key": server.key as string, "content-type": "application/json" } }));
  const file = writeTargets(`compare-${scenario}`, targets);
  await attack(vegeta, { name: "warmup", targetsFile: file, rate, seconds: 2, discard: true });
  const r = await attack(vegeta, { name: `compare-${scenario}`, targetsFile: file, rate, seconds: settings.seconds, serverPid: server.pid });
  const cpuUs = ((r.server?.cpu_seconds ?? Number.NaN) * 1e6) / Math.max(1, r.requests);
  rows.push({ build: name, scenario, cpu_us_per_req: round(cpuUs, 1), p50_ms: r.p50_ms, p99_ms: r.p99_ms, achieved: r.achieved_rps });
  log(`${name} ${scenario}: ${round(cpuUs, 1)} us CPU/request, p50 ${r.p50_ms} p99 ${r.p99_ms} ms, ${r.achieved_rps}/s`);
}

try {
  for (let round_ = 0; round_ < rounds; round_++) {
    for (const b of builds) {
      if (b.bin === "bare") {
        // the bare Bun.serve baseline (bench/baseline-server.ts) answering bodies of the same size
        if (responseBytes.size === 0) throw new Error("list a feature-store build before `bare`: its response sizes are used");
        const bare = await startBaseline();
        try {
          await measure(b.name, bare, "online_1x10", bodies1, rate1);
          await measure(b.name, bare, "online_100x10", bodies100, rate100);
        } finally {
          await bare.stop();
        }
        continue;
      }
      const dir = mkdtempSync(join(tmpdir(), "fs-compare-"));
      const server = await startServer(b.bin, await freshStack(dir), `compare-${b.name}`);
      try {
        await loadData(server, entities, 1, Date.now());
        // COMPARE_WARM_ALL=1: every body once first (a cache that fills on reads, like the near
        // cache in front of Redis, is then measured warm, as the embedded one is after the load)
        const warmAll = process.env.COMPARE_WARM_ALL === "1";
        for (const body of warmAll ? [...bodies1, ...bodies100] : bodies1.slice(0, 200)) await post(server, "/api/v1/features/online", body);
        if (responseBytes.size === 0) {
          responseBytes.set("online_1x10", Buffer.byteLength(await post(server, "/api/v1/features/online", bodies1[0] as string)));
          responseBytes.set("online_100x10", Buffer.byteLength(await post(server, "/api/v1/features/online", bodies100[0] as string)));
        }
        await measure(b.name, server, "online_1x10", bodies1, rate1);
        await measure(b.name, server, "online_100x10", bodies100, rate100);
      } finally {
        await server.stop();
        rmSync(dir, { recursive: true, force: true });
      }
    }
  }

} finally {
  await Promise.all([pg?.stop(), redis?.stop()]);
}

const med = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] as number;
const bareName = builds.find((b) => b.bin === "bare")?.name;
const cpuOf = (build: string, sc: string): number => med(rows.filter((r) => r.build === build && r.scenario === sc).map((r) => r.cpu_us_per_req));
console.log(`\nstack: ${stackName}`);
console.log("\n| build | scenario | CPU us/request (median of rounds) | bare / ours (per CPU-second) | p50 ms | p99 ms |\n| --- | --- | ---: | ---: | ---: | ---: |");
for (const b of builds) {
  for (const sc of ["online_1x10", "online_100x10"]) {
    const rs = rows.filter((r) => r.build === b.name && r.scenario === sc);
    const ratio = bareName !== undefined ? `${round((cpuOf(bareName, sc) / cpuOf(b.name, sc)) * 100, 1)}%` : "-";
    console.log(`| ${b.name} | ${sc} | ${med(rs.map((r) => r.cpu_us_per_req))} | ${ratio} | ${med(rs.map((r) => r.p50_ms))} | ${med(rs.map((r) => r.p99_ms))} |`);
  }
}
process.exit(0);
