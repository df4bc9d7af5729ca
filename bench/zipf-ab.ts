/**
 * A/B of the Zipf key mix with Redis capped below the data set (the `online_1x10_zipf_capped`
 * scenario of bench/load.ts: evictions, so many lookups miss Redis and go to PostgreSQL):
 * `bun bench/zipf-ab.ts NAME=BINARY[+VAR=VALUE...] ...`, e.g.
 * `bun bench/zipf-ab.ts main=/work/bin/feature-store-main off=/work/bin/feature-store-main+REDIS_NEAR_CACHE=false new=dist/feature-store`.
 *
 * Per build and round (`ZIPF_ROUNDS`, default 3, builds in alternation): a new database and an
 * emptied Redis, BENCH_ENTITIES entities loaded over HTTP, Redis `maxmemory` capped at
 * `ZIPF_CAP` (default 0.3) of what the load used (volatile-lru), then online 1 x 10 with Zipf
 * (`BENCH_ZIPF_S`, default 1.0) entity ids at `ZIPF_RATE`/s (default 2000) after a 5 s warm-up,
 * for BENCH_SECONDS. Reports p50/p99, errors, the server's CPU per request, the cache hit rate and
 * Redis's evictions; the medians of the rounds per build at the end.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { redisCommand, startPostgres, startRedis } from "../test/harness/services.ts";
import { log, round, settings } from "./lib/common.ts";
import { onlineOne, prng, zipfSampler } from "./lib/dataset.ts";
import { cacheCounters, hitRate, loadData, startServer, type StackEnv } from "./lib/server.ts";
import { attack, ensureVegeta, writeTargets } from "./lib/vegeta.ts";

const builds = process.argv.slice(2).map((a) => {
  const i = a.indexOf("=");
  if (i <= 0) throw new Error(`expected NAME=BINARY[+VAR=VALUE...], got ${a}`);
  const [bin, ...vars] = a.slice(i + 1).split("+");
  return { name: a.slice(0, i), bin: bin as string, env: Object.fromEntries(vars.map((v) => [v.slice(0, v.indexOf("=")), v.slice(v.indexOf("=") + 1)])) };
});
if (builds.length === 0) {
  console.error("usage: bun bench/zipf-ab.ts NAME=BINARY[+VAR=VALUE...] ...");
  process.exit(2);
}
const rounds = Number(process.env.ZIPF_ROUNDS ?? 3);
const rate = Number(process.env.ZIPF_RATE ?? 2000);
const capShare = Number(process.env.ZIPF_CAP ?? 0.3);
const zipfS = Number(process.env.BENCH_ZIPF_S ?? 1.0);
const entities = settings.entities;
const vegeta = await ensureVegeta();
const zipf = zipfSampler(entities, zipfS, prng(7));
const bodies = Array.from({ length: 50_000 }, () => onlineOne(zipf()));
const [pg, redis] = await Promise.all([startPostgres({ settings: { shared_buffers: "256MB" } }), startRedis()]);
const info = async (section: string, field: string): Promise<number> => Number(new RegExp(`${field}:(\\d+)`).exec(await redisCommand(redis.port, ["INFO", section]))?.[1] ?? Number.NaN);

interface Row {
  build: string;
  p50_ms: number;
  p99_ms: number;
  errors: number;
  cpu_us_per_req: number;
  achieved: number;
  hit_rate: number | null;
  evicted: number;
}
const rows: Row[] = [];
try {
  for (let r = 0; r < rounds; r++) {
    for (const b of builds) {
      await redisCommand(redis.port, ["CONFIG", "SET", "maxmemory", "0"]);
      await redisCommand(redis.port, ["FLUSHALL"]);
      await redisCommand(redis.port, ["CONFIG", "RESETSTAT"]);
      const dir = mkdtempSync(join(tmpdir(), "fs-zipf-"));
      const stack = { POSTGRES_URL: await pg.createDatabase(), REDIS_URL: redis.url, ...b.env } as StackEnv;
      const server = await startServer(b.bin, stack, `zipf-${b.name}`);
      try {
        await loadData(server, entities, 1, Date.now());
        const used = await info("memory", "used_memory");
        const cap = Math.max(4 * 2 ** 20, Math.floor(used * capShare));
        await redisCommand(redis.port, ["CONFIG", "SET", "maxmemory-policy", "volatile-lru"]);
        await redisCommand(redis.port, ["CONFIG", "SET", "maxmemory", String(cap)]);
        const file = writeTargets(`zipf-${b.name}`, bodies.map((body) => ({ method: "POST" as const, url: `${server.url}/api/v1/features/online`, body, headers: { "x-api-key": server.key, "content-type": "application/json" } })));
        await attack(vegeta, { name: "warmup", targetsFile: file, rate, seconds: 5, discard: true, timeoutS: 5 });
        const e0 = await info("stats", "evicted_keys");
        const c0 = await cacheCounters(server);
        const a = await attack(vegeta, { name: `zipf-${b.name}`, targetsFile: file, rate, seconds: settings.seconds, serverPid: server.pid });
        const c1 = await cacheCounters(server);
        const evicted = (await info("stats", "evicted_keys")) - e0;
        const row: Row = {
          build: b.name,
          p50_ms: a.p50_ms,
          p99_ms: a.p99_ms,
          errors: a.errors,
          cpu_us_per_req: round(((a.server?.cpu_seconds ?? Number.NaN) * 1e6) / Math.max(1, a.requests), 1),
          achieved: a.achieved_rps,
          hit_rate: hitRate(c0, c1),
          evicted,
        };
        rows.push(row);
        log(`round ${r + 1} ${b.name}: p50 ${row.p50_ms} p99 ${row.p99_ms} ms, ${row.achieved}/s, errors ${row.errors}, ${row.cpu_us_per_req} us CPU/request, cache hit ${row.hit_rate}, ${evicted} evicted (cap ${(cap / 2 ** 20).toFixed(1)} of ${(used / 2 ** 20).toFixed(1)} MiB)`);
      } finally {
        await server.stop();
        rmSync(dir, { recursive: true, force: true });
      }
    }
  }
} finally {
  await Promise.all([pg.stop(), redis.stop()]);
}

const med = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] as number;
console.log(`\nZipf(${zipfS}) online 1x10 at ${rate}/s, Redis capped at ${capShare * 100}% of the data, ${entities} entities, ${rounds} rounds (medians)`);
console.log("\n| build | p50 ms | p99 ms | errors | CPU us/request | cache hit rate | evicted keys |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
for (const b of builds) {
  const rs = rows.filter((r) => r.build === b.name);
  console.log(`| ${b.name} | ${med(rs.map((r) => r.p50_ms))} | ${med(rs.map((r) => r.p99_ms))} | ${med(rs.map((r) => r.errors))} | ${med(rs.map((r) => r.cpu_us_per_req))} | ${med(rs.map((r) => r.hit_rate ?? Number.NaN))} | ${med(rs.map((r) => r.evicted))} |`);
}
process.exit(0);
