/**
 * Steady-state A/B of builds: `bun bench/steady-ab.ts NAME=BINARY ... [bare]`.
 *
 * Unlike bench/compare.ts (a fresh server and data set per build and round, so each figure also
 * holds the JIT's warm-up), every server is started and loaded (20,000 entities, embedded) once,
 * warmed up, and then measured in short alternating windows (online 1 x 10 at STEADY_RATE, default
 * 2,000/s, for STEADY_SECONDS, default 6, STEADY_ROUNDS times, default 5): server CPU microseconds per request
 * (all threads), median of the rounds, and the ratio to `bare` (bench/baseline-server.ts answering
 * a body of the same size). A wrapper script as a binary (`#!/bin/sh` + `export LOG_LEVEL=warn` +
 * `exec BINARY "$@"`) measures a setting. STEADY_STACK=redis runs the builds on PostgreSQL + Redis
 * instead (started by the test harness: a database and a Redis server of its own per build; the
 * warm-up asks every body, so the near cache holds them all); the CPU counted is the server's.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadData, post, startServer, startBaseline, type StackEnv } from "./lib/server.ts";
import { onlineOne, prng } from "./lib/dataset.ts";
import { attack, ensureVegeta, onlineTargetsFile } from "./lib/vegeta.ts";
import { startPostgres, startRedis, type PgService, type RedisService } from "../test/harness/services.ts";
const builds = process.argv.slice(2).map((a) => {
  const i = a.indexOf("=");
  return i > 0 ? { name: a.slice(0, i), bin: a.slice(i + 1) } : { name: a, bin: a };
});
const rounds = Number(process.env.STEADY_ROUNDS ?? 5);
const rate = Number(process.env.STEADY_RATE ?? 2000);
const secs = Number(process.env.STEADY_SECONDS ?? 6);
const vegeta = await ensureVegeta();
const rnd = prng(5);
const bodies = Array.from({ length: 5000 }, () => onlineOne(Math.floor(rnd() * 20000)));
const servers: { url: string; pid: number; key?: string; stop(): Promise<void> }[] = [];
let size = 1100;
const stackName = process.env.STEADY_STACK ?? "embedded";
if (stackName !== "embedded" && stackName !== "redis") throw new Error("STEADY_STACK: embedded or redis");
const pg: PgService | undefined = stackName === "redis" ? await startPostgres({ settings: { shared_buffers: "256MB" } }) : undefined;
const redises: RedisService[] = [];
try {
  for (const b of builds) {
    if (b.bin === "bare") {
      servers.push(await startBaseline());
      continue;
    }
    let stack: StackEnv = { DATA_DIR: mkdtempSync(join(tmpdir(), "fs-steady-ab-")) };
    if (pg !== undefined) {
      const redis = await startRedis();
      redises.push(redis);
      stack = { POSTGRES_URL: await pg.createDatabase(), REDIS_URL: redis.url };
    }
    const s = await startServer(b.bin, stack, `steady-ab-${b.name}`);
    servers.push(s);
    await loadData(s, 20000, 1, Date.now());
    for (const x of bodies.slice(0, 200)) await post(s, "/api/v1/features/online", x);
    size = Buffer.byteLength(await post(s, "/api/v1/features/online", bodies[0]!));
  }
  const files = builds.map((b, i) => onlineTargetsFile(`steady-ab-${b.name}`, servers[i]!, b.bin === "bare", bodies, size));
  for (let i = 0; i < builds.length; i++) await attack(vegeta, { name: "warm", targetsFile: files[i]!, rate, seconds: 6, discard: true });
  const res: Record<string, number[]> = {};
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < builds.length; i++) {
      const b = builds[i]!;
      await attack(vegeta, { name: "warm", targetsFile: files[i]!, rate, seconds: 1, discard: true });
      const a = await attack(vegeta, { name: b.name, targetsFile: files[i]!, rate, seconds: secs, serverPid: servers[i]!.pid });
      (res[b.name] ??= []).push((a.server!.cpu_seconds * 1e6) / a.requests);
    }
    console.error(`round ${r}: ` + builds.map((b) => `${b.name} ${res[b.name]!.at(-1)!.toFixed(1)}`).join("  "));
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const bare = builds.find((b) => b.bin === "bare");
  for (const b of builds)
    console.log(b.name.padEnd(12), med(res[b.name]!).toFixed(1), bare ? `${((med(res[bare.name]!) / med(res[b.name]!)) * 100).toFixed(1)}%` : "", res[b.name]!.map((x) => x.toFixed(1)).join(" "));
} finally {
  for (const s of servers) await s.stop();
  await Promise.all([pg?.stop(), ...redises.map((r) => r.stop())]);
}
