/**
 * A/B of saturated throughput on PostgreSQL + Redis: `bun bench/saturation-ab.ts NAME=BINARY ...`
 *
 * The saturation search of bench/load.ts (rate grown x1.6 per step until a step fails, then
 * bisected; a step passes with < 1% errors, >= 95% of the offered rate answered and p99 under
 * the bound) for online 100 x 10 (200 bodies of 100 of BENCH_ENTITIES entities, p99 <= 100 ms)
 * and, with SAT_ONLY=1x10,100x10, online 1 x 10 too, for each build in turn on a fresh database
 * and an emptied Redis (started by the test harness), SAT_ROUNDS times (default 1). Prints the
 * highest passing rate, features/s and answers per server CPU-second of each.
 */
import { buildsOf, log } from "./lib/common.ts";
import { onlineMany, onlineOne, prng } from "./lib/dataset.ts";
import { loadData, startServer } from "./lib/server.ts";
import { attack, ensureVegeta, saturate, writeTargets } from "./lib/vegeta.ts";
import { redisCommand, startPostgres, startRedis } from "../test/harness/services.ts";

const builds = buildsOf(process.argv.slice(2), "bun bench/saturation-ab.ts NAME=BINARY [NAME=BINARY ...]");
const rounds = Number(process.env.SAT_ROUNDS ?? 1);
const entities = Number(process.env.BENCH_ENTITIES ?? 20_000);
const only = new Set((process.env.SAT_ONLY ?? "100x10").split(","));
const [pg, redis] = await Promise.all([startPostgres({ settings: { shared_buffers: "256MB" } }), startRedis()]);
const vegeta = await ensureVegeta();
const rnd = prng(11);
const pick = (): number => Math.floor(rnd() * entities);
const scenarios = [
  { name: "1x10", features: 10, start: 2000, p99Ms: 25, bodies: Array.from({ length: Math.min(20_000, entities) }, () => onlineOne(pick())) },
  { name: "100x10", features: 1000, start: 100, p99Ms: 100, bodies: Array.from({ length: 200 }, () => onlineMany(Array.from({ length: 100 }, pick))) },
].filter((s) => only.has(s.name));
const results: string[] = [];
try {
  for (let r = 0; r < rounds; r++) {
    for (const b of builds) {
      await redisCommand(redis.port, ["FLUSHALL"]);
      const server = await startServer(b.bin, { POSTGRES_URL: await pg.createDatabase(), REDIS_URL: redis.url }, `saturation-ab-${b.name}`);
      try {
        await loadData(server, entities, 3, Date.now());
        for (const sc of scenarios) {
          const file = writeTargets(`saturation-ab-${sc.name}`, sc.bodies.map((body) => ({ method: "POST" as const, url: `${server.url}/api/v1/features/online`, body, headers: { "x-api-key": server.key, "content-type": "application/json" } })));
          await attack(vegeta, { name: "warmup", targetsFile: file, rate: sc.start, seconds: 2, discard: true, timeoutS: 5 });
          const load = (await Bun.file("/proc/loadavg").text()).split(" ")[0];
          const s = await saturate(vegeta, { name: `saturation-ab-${b.name}-${sc.name}`, targetsFile: file, start: sc.start, stepSeconds: 3, p99Ms: sc.p99Ms, serverPid: server.pid });
          const line = `round ${r + 1} ${b.name} online_${sc.name}: ${s.max_rps} req/s (${s.max_rps * sc.features} features/s), ${s.per_cpu_second} answers per server CPU-second, load average ${load}`;
          log(line);
          results.push(line);
        }
      } finally {
        await server.stop();
      }
    }
  }
} finally {
  await Promise.all([pg.stop(), redis.stop()]);
}
console.log(results.join("\n"));
