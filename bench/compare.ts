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
 * Build a scratch copy with a proposed change: `cp -r src /tmp/x/src` ..., then
 * `OUTFILE=/tmp/x.bin bun scripts/build.ts` from that tree.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { log, round, settings } from "./lib/common.ts";
import { onlineMany, onlineOne, prng } from "./lib/dataset.ts";
import { loadData, post, startServer, type Server } from "./lib/server.ts";
import { attack, ensureVegeta, writeTargets } from "./lib/vegeta.ts";

const builds = process.argv.slice(2).map((a) => {
  const i = a.indexOf("=");
  return i > 0 ? { name: a.slice(0, i), bin: a.slice(i + 1) } : { name: a, bin: a };
});
if (builds.length === 0) {
  console.error("usage: bun bench/compare.ts NAME=BINARY [NAME=BINARY ...]");
  process.exit(2);
}
const rounds = Number(process.env.COMPARE_ROUNDS ?? 2);
const rate1 = Number(process.env.COMPARE_RATE_1X10 ?? 2000);
const rate100 = Number(process.env.COMPARE_RATE_100X10 ?? 50);
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

async function measure(name: string, server: Server, scenario: string, bodies: string[], rate: number): Promise<void> {
  const file = writeTargets(`compare-${scenario}`, bodies.map((body) => ({ method: "POST" as const, url: `${server.url}/api/v1/features/online`, body, headers: { "x-api-key": server.key, "content-type": "application/json" } })));
  await attack(vegeta, { name: "warmup", targetsFile: file, rate, seconds: 2, discard: true });
  const r = await attack(vegeta, { name: `compare-${scenario}`, targetsFile: file, rate, seconds: settings.seconds, serverPid: server.pid });
  const cpuUs = ((r.server?.cpu_seconds ?? Number.NaN) * 1e6) / Math.max(1, r.requests);
  rows.push({ build: name, scenario, cpu_us_per_req: round(cpuUs, 1), p50_ms: r.p50_ms, p99_ms: r.p99_ms, achieved: r.achieved_rps });
  log(`${name} ${scenario}: ${round(cpuUs, 1)} us CPU/request, p50 ${r.p50_ms} p99 ${r.p99_ms} ms, ${r.achieved_rps}/s`);
}

for (let round_ = 0; round_ < rounds; round_++) {
  for (const b of builds) {
    const dir = mkdtempSync(join(tmpdir(), "fs-compare-"));
    const server = await startServer(b.bin, { DATA_DIR: dir }, `compare-${b.name}`);
    try {
      await loadData(server, entities, 1, Date.now());
      for (const body of bodies1.slice(0, 200)) await post(server, "/api/v1/features/online", body);
      await measure(b.name, server, "online_1x10", bodies1, rate1);
      await measure(b.name, server, "online_100x10", bodies100, rate100);
    } finally {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

console.log("\n| build | scenario | CPU us/request (median of rounds) | p50 ms | p99 ms |\n| --- | --- | ---: | ---: | ---: |");
for (const b of builds) {
  for (const sc of ["online_1x10", "online_100x10"]) {
    const rs = rows.filter((r) => r.build === b.name && r.scenario === sc);
    const med = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] as number;
    console.log(`| ${b.name} | ${sc} | ${med(rs.map((r) => r.cpu_us_per_req))} | ${med(rs.map((r) => r.p50_ms))} | ${med(rs.map((r) => r.p99_ms))} |`);
  }
}
process.exit(0);
