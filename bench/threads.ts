/**
 * Where the server CPU of an online 1 x 10 request goes, by thread: `bun bench/threads.ts NAME=BINARY ... [bare]`.
 *
 * The same window as bench/compare.ts (a fresh embedded server per build and round, BENCH_ENTITIES
 * entities loaded over HTTP, 200 requests, a 2 s warm-up, then BENCH_SECONDS at
 * COMPARE_RATE_1X10/s, default 2,000), alternating the builds COMPARE_ROUNDS times (default 2).
 * Prints the server's CPU microseconds per request of all its threads, then of each kind of
 * thread (`/proc/PID/task/TID/stat`, grouped by name: the main thread, JavaScriptCore's JIT
 * (`JITWorker`) and garbage-collector helpers (`HeapHelper`), mimalloc's `mi-scavenger`, Bun's
 * pools), and the median of each over the rounds. `bare` measures the bare Bun.serve
 * (bench/baseline-server.ts) answering a body of the same size (1,100 bytes). `NAME=BINARY@redis`
 * runs that build on PostgreSQL + Redis (started by the test harness; a new database and an
 * emptied Redis every round, as `COMPARE_STACK=redis bun bench/compare.ts` has them), so one run
 * can put the embedded and the Redis stack side by side; the CPU counted is the server's alone.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildsOf, log, round, settings } from "./lib/common.ts";
import { onlineOne, prng } from "./lib/dataset.ts";
import { loadData, post, startBaseline, startServer, type StackEnv } from "./lib/server.ts";
import { attack, ensureVegeta, writeTargets } from "./lib/vegeta.ts";
import { redisCommand, startPostgres, startRedis } from "../test/harness/services.ts";

const builds = buildsOf(process.argv.slice(2), "bun bench/threads.ts NAME=BINARY[@redis] [NAME=BINARY ...] [bare]").map((b) =>
  b.bin.endsWith("@redis") ? { name: b.name, bin: b.bin.slice(0, -"@redis".length), redis: true } : { ...b, redis: false },
);
const [pg, redis] = builds.some((b) => b.redis) ? await Promise.all([startPostgres({ settings: { shared_buffers: "256MB" } }), startRedis()]) : [];
/** A fresh stack for one build's round: a data dir, or a new database and an emptied Redis. */
async function stackFor(onRedis: boolean, dir: string): Promise<StackEnv> {
  if (!onRedis || pg === undefined || redis === undefined) return { DATA_DIR: dir };
  await redisCommand(redis.port, ["FLUSHALL"]);
  return { POSTGRES_URL: await pg.createDatabase(), REDIS_URL: redis.url };
}
const rounds = Number(process.env.COMPARE_ROUNDS ?? 2);
const rate = Number(process.env.COMPARE_RATE_1X10 ?? 2000);
const entities = settings.entities;
const vegeta = await ensureVegeta();
const rnd = prng(11);
const bodies = Array.from({ length: 5000 }, () => onlineOne(Math.floor(rnd() * entities)));
const TICKS = 100; // clock ticks per second (USER_HZ)

/** CPU seconds of each thread kind of `pid` (thread names with their numbers dropped). */
function byThread(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      const close = stat.lastIndexOf(")");
      const name = tid === String(pid) ? "main" : stat.slice(stat.indexOf("(") + 1, close).replace(/[\s#]*\d+$/, "");
      const f = stat.slice(close + 2).split(" ");
      out.set(name, (out.get(name) ?? 0) + (Number(f[11]) + Number(f[12])) / TICKS);
    } catch {
      // a thread that ended meanwhile
    }
  }
  return out;
}

const results = new Map<string, Map<string, number[]>>();
for (let r = 0; r < rounds; r++) {
  for (const b of builds) {
    const bare = b.bin === "bare";
    const dir = mkdtempSync(join(tmpdir(), "fs-threads-"));
    const fs = bare ? undefined : await startServer(b.bin, await stackFor(b.redis, dir), `threads-${b.name}`);
    const server = fs ?? (await startBaseline());
    try {
      if (fs !== undefined) {
        await loadData(fs, entities, 1, Date.now());
        for (const body of bodies.slice(0, 200)) await post(fs, "/api/v1/features/online", body);
      }
      const key = fs?.key ?? "";
      const url = bare ? `${server.url}/bytes/1100` : `${server.url}/api/v1/features/online`;
      const file = writeTargets("threads", bodies.map((body) => ({ method: "POST" as const, url, body, headers: { "x-api-key": key, "content-type": "application/json" } })));
      await attack(vegeta, { name: "warmup", targetsFile: file, rate, seconds: 2, discard: true });
      const before = byThread(server.pid);
      const a = await attack(vegeta, { name: "threads", targetsFile: file, rate, seconds: settings.seconds, serverPid: server.pid });
      const after = byThread(server.pid);
      const per = new Map<string, number>();
      let total = 0;
      for (const [name, s] of after) {
        const used = s - (before.get(name) ?? 0);
        total += used;
        per.set(name, (per.get(name) ?? 0) + used);
      }
      per.set("total", total);
      const row = results.get(b.name) ?? new Map<string, number[]>();
      results.set(b.name, row);
      const parts: string[] = [];
      for (const [name, s] of [...per].sort((x, y) => y[1] - x[1])) {
        const us = round((s * 1e6) / Math.max(1, a.requests), 1);
        row.set(name, [...(row.get(name) ?? []), us]);
        if (us >= 0.5) parts.push(`${name} ${us}`);
      }
      log(`${b.name} round ${r + 1}: us CPU/request ${parts.join(", ")} (p50 ${a.p50_ms} ms, ${a.achieved_rps}/s)`);
    } finally {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

const med = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] as number;
console.log("\n| build | thread | CPU us/request, median of rounds | per round |\n| --- | --- | ---: | --- |");
for (const [name, row] of results) {
  for (const [thread, xs] of [...row].sort((x, y) => med(y[1]) - med(x[1]))) {
    if (med(xs) >= 0.5) console.log(`| ${name} | ${thread} | ${med(xs)} | ${xs.join(", ")} |`);
  }
}
await Promise.all([pg?.stop(), redis?.stop()]);
process.exit(0);
