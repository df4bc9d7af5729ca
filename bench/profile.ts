/**
 * CPU profile of the server under load: `bun bench/profile.ts [online_1x10|online_100x10|batch_pit_1000x10] [rate] [seconds]`.
 *
 * Runs `bun --cpu-prof --cpu-prof-md src/cli.ts serve` (from source, so function names are
 * readable; BENCH_SRC=dir profiles another tree, e.g. a scratch copy with a proposed change),
 * embedded stack, loads the data set, drives the scenario with vegeta at a constant rate, stops
 * the server and leaves the profile (.cpuprofile and the markdown summary) in
 * bench/results/tmp/profile-<scenario>/. Prints the hottest functions by self time.
 * PROFILE_STACK=redis profiles the PostgreSQL + Redis stack instead (started by the test harness).
 * The profile holds the cache fill too (`bun bench/lib/cpuprofile.ts` with CPUPROFILE_SKIP leaves
 * it out). JavaScriptCore's sampler counts wall time inside a native call: on the Redis stack the
 * near cache's `PING` `write` shows at ~20-24% because the server sits preempted in it by the
 * Redis it just woke; `bench/stack-probe.ts` gives the CPU and system calls per request by stack.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureDir, log, ROOT, settings, TMP_DIR } from "./lib/common.ts";
import { batchRows, onlineMany, onlineOne, prng } from "./lib/dataset.ts";
import { loadData, post, startServer } from "./lib/server.ts";
import { attack, ensureVegeta, writeTargets } from "./lib/vegeta.ts";
import { startPostgres, startRedis } from "../test/harness/services.ts";

const scenario = process.argv[2] ?? "online_1x10";
const rate = Number(process.argv[3] ?? (scenario === "online_1x10" ? 3000 : scenario === "online_100x10" ? 30 : 2));
const seconds = Number(process.argv[4] ?? 10);
const src = process.env.BENCH_SRC ?? ROOT;
const outDir = ensureDir(join(TMP_DIR, `profile-${scenario}`));
for (const f of readdirSync(outDir)) rmSync(join(outDir, f), { force: true });

const vegeta = await ensureVegeta();
// A wrapper "binary": bun with the profiler flags running the CLI from source.
const wrapper = join(outDir, "feature-store-profiled.sh");
await Bun.write(wrapper, `#!/bin/sh\nif [ "$1" = serve ]; then exec ${process.execPath} --cpu-prof --cpu-prof-md --cpu-prof-dir=${outDir} --cpu-prof-interval=${process.env.PROFILE_INTERVAL_US ?? 250} ${join(src, "src", "cli.ts")} "$@"; fi\nexec ${process.execPath} ${join(src, "src", "cli.ts")} "$@"\n`);
await Bun.spawn(["chmod", "+x", wrapper]).exited;

const dataDir = mkdtempSync(join(tmpdir(), "fs-bench-profile-"));
const stackName = process.env.PROFILE_STACK ?? "embedded";
if (stackName !== "embedded" && stackName !== "redis") throw new Error("PROFILE_STACK: embedded or redis");
const [pg, redis] = stackName === "redis" ? await Promise.all([startPostgres({ settings: { shared_buffers: "256MB" } }), startRedis()]) : [];
const stack = pg && redis ? { POSTGRES_URL: await pg.createDatabase(), REDIS_URL: redis.url } : { DATA_DIR: dataDir };
const now = Date.now();
// Load with a plain server first, so the profile holds the scenario only.
const binary = join(outDir, "feature-store-plain.sh");
await Bun.write(binary, `#!/bin/sh\nexec ${process.execPath} ${join(src, "src", "cli.ts")} "$@"\n`);
await Bun.spawn(["chmod", "+x", binary]).exited;
const entities = Math.min(settings.entities, 20_000);
const loader = await startServer(binary, stack, `profile-load-${scenario}`);
try {
  await loadData(loader, entities, settings.historyDays, now);
} finally {
  await loader.stop();
}
const server = await startServer(wrapper, stack, `profile-${scenario}`);
try {
  const rnd = prng(7);
  const pick = (): number => Math.floor(rnd() * entities);
  const bodies =
    scenario === "online_1x10"
      ? Array.from({ length: 5000 }, () => onlineOne(pick()))
      : scenario === "online_100x10"
        ? Array.from({ length: 100 }, () => onlineMany(Array.from({ length: 100 }, pick)))
        : Array.from({ length: 20 }, () => batchRows(Array.from({ length: 1000 }, pick), settings.historyDays, now, rnd));
  const path = scenario.startsWith("batch") ? "/api/v1/features/batch" : "/api/v1/features/online";
  for (const b of bodies) await post(server, path, b); // fill the cache: the profile is the steady state
  const file = writeTargets(`profile-${scenario}`, bodies.map((body) => ({ method: "POST" as const, url: `${server.url}${path}`, body, headers: { "x-api-key": server.key, "content-type": "application/json" } })));
  log(`profiling ${scenario} at ${rate}/s for ${seconds} s`);
  const r = await attack(vegeta, { name: "profile", targetsFile: file, rate, seconds, serverPid: server.pid });
  log(`p50 ${r.p50_ms} p99 ${r.p99_ms} ms, ${r.achieved_rps}/s, server cpu ${r.server?.cpu_percent}%`);
} finally {
  await server.stop();
  rmSync(dataDir, { recursive: true, force: true });
  await Promise.all([pg?.stop(), redis?.stop()]);
}
const md = readdirSync(outDir).find((f) => f.endsWith(".md"));
if (md) {
  const text = readFileSync(join(outDir, md), "utf8");
  console.log(text.split("\n").slice(0, 80).join("\n"));
  log(`profile: ${join(outDir, md)}`);
} else log(`no markdown profile written in ${outDir}`);
