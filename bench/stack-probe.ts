/**
 * Where the server's CPU goes per online 1x10 request, by stack: `bun bench/stack-probe.ts NAME=BINARY[@redis] ... [bare]`.
 *
 * Every server is started and loaded once (20,000 entities), every body asked once (the near
 * cache in front of Redis holds them all), then measured in alternating windows (online 1 x 10
 * at PROBE_RATE/s, default 2,000, for PROBE_SECONDS, default 6, PROBE_ROUNDS times, default 3).
 * Per request, median of the rounds: CPU of all threads (as compare.ts counts it) and of the
 * serving thread, user and system CPU (/proc), the serving thread's voluntary and involuntary
 * context switches, and system calls by name (`perf stat` on the syscall tracepoints of
 * PROBE_SYSCALLS, when perf is there). PROBE_RECORD=1 runs `perf record -g` on each window
 * instead (the data in /tmp/stack-probe-NAME-rN.data, for `perf report`).
 *
 * `NAME=BINARY@redis` runs that build on PostgreSQL + Redis (a Redis server of its own, one
 * PostgreSQL for all); with BENCH_PIN=1 the servers and the vegeta run pinned as in bench/load.ts,
 * Redis and PostgreSQL on the server's core. A wrapper script as BINARY (`#!/bin/sh`, `export
 * VAR=value`, `exec BINARY "$@"`) measures a setting.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadData, pinToServerCore, post, postmasterPid, redisPid, startServer, startBaseline, type StackEnv } from "./lib/server.ts";
import { onlineOne, prng } from "./lib/dataset.ts";
import { attack, ensureVegeta, onlineTargetsFile } from "./lib/vegeta.ts";
import { loadAverage } from "./lib/common.ts";
import { startPostgres, startRedis, type PgService, type RedisService } from "../test/harness/services.ts";

const builds = process.argv.slice(2).map((a) => {
  const i = a.indexOf("=");
  const name = i > 0 ? a.slice(0, i) : a;
  let bin = i > 0 ? a.slice(i + 1) : a;
  let stack = "embedded";
  const at = bin.lastIndexOf("@");
  if (at > 0) {
    stack = bin.slice(at + 1);
    bin = bin.slice(0, at);
  }
  return { name, bin, stack };
});
const rounds = Number(process.env.PROBE_ROUNDS ?? 3);
const rate = Number(process.env.PROBE_RATE ?? 2000);
const secs = Number(process.env.PROBE_SECONDS ?? 6);
const SYSCALLS = (process.env.PROBE_SYSCALLS ?? "sendto,recvfrom,epoll_pwait2,epoll_pwait,epoll_ctl,write,writev,read,futex,madvise,mmap,munmap,clock_gettime,getrusage").split(",");
const vegeta = await ensureVegeta();
const rnd = prng(5);
const bodies = Array.from({ length: 5000 }, () => onlineOne(Math.floor(rnd() * 20000)));
const servers: { url: string; pid: number; key?: string; stop(): Promise<void> }[] = [];
let size = 1100;
const needPg = builds.some((b) => b.stack === "redis");
const pg: PgService | undefined = needPg ? await startPostgres({ settings: { shared_buffers: "256MB" } }) : undefined;
const redises: RedisService[] = [];
const dirs: string[] = [];

function stat(pid: number, tid?: number): { utime: number; stime: number } {
  const s = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, "utf8");
  const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
  return { utime: Number(f[11]) / 100, stime: Number(f[12]) / 100 };
}
function ctx(pid: number): { vol: number; invol: number } {
  const s = readFileSync(`/proc/${pid}/task/${pid}/status`, "utf8");
  return { vol: Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(s)?.[1]), invol: Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(s)?.[1]) };
}
type Row = Record<string, number>;
const res: Record<string, Row[]> = {};
try {
  for (const b of builds) {
    if (b.bin === "bare") {
      servers.push(await startBaseline());
      continue;
    }
    const dir = mkdtempSync(join(tmpdir(), "fs-stack-probe-"));
    dirs.push(dir);
    let stack: StackEnv = { DATA_DIR: dir };
    if (b.stack === "redis" && pg !== undefined) {
      const redis = await startRedis();
      redises.push(redis);
      // BENCH_PIN=1: Redis and PostgreSQL on the server's core, as bench/load.ts has them
      await pinToServerCore(await redisPid(redis));
      const pm = postmasterPid(pg.dir);
      if (pm !== undefined) await pinToServerCore(pm);
      stack = { POSTGRES_URL: await pg.createDatabase(), REDIS_URL: redis.url };
    }
    const s = await startServer(b.bin, stack, `stack-probe-${b.name}`);
    servers.push(s);
    await loadData(s, 20000, 1, Date.now());
    for (const x of bodies) await post(s, "/api/v1/features/online", x);
    size = Buffer.byteLength(await post(s, "/api/v1/features/online", bodies[0]!));
  }
  const files = builds.map((b, i) => onlineTargetsFile(`stack-probe-${b.name}`, servers[i]!, b.bin === "bare", bodies, size));
  for (let i = 0; i < builds.length; i++) await attack(vegeta, { name: "warm", targetsFile: files[i]!, rate, seconds: 6, discard: true });
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < builds.length; i++) {
      const b = builds[i]!;
      const pid = servers[i]!.pid;
      await attack(vegeta, { name: "warm", targetsFile: files[i]!, rate, seconds: 1, discard: true });
      const perfOut = join(tmpdir(), `stack-probe-perf-${pid}.txt`);
      const record = process.env.PROBE_RECORD === "1";
      const perf = Bun.which("perf")
        ? Bun.spawn(record ? ["perf", "record", "-g", "-F", "2000", "-o", join(tmpdir(), `stack-probe-${b.name}-r${r}.data`), "-p", String(pid)] : ["perf", "stat", "-x", ",", "-o", perfOut, "-p", String(pid), "-e", ["context-switches", "raw_syscalls:sys_enter", ...SYSCALLS.map((s) => `syscalls:sys_enter_${s}`)].join(",")], { stdout: "ignore", stderr: "ignore" })
        : undefined;
      await Bun.sleep(200);
      const s0 = stat(pid);
      const m0 = stat(pid, pid);
      const c0 = ctx(pid);
      const a = await attack(vegeta, { name: b.name, targetsFile: files[i]!, rate, seconds: secs, serverPid: pid });
      const s1 = stat(pid);
      const m1 = stat(pid, pid);
      const c1 = ctx(pid);
      perf?.kill("SIGINT");
      await perf?.exited;
      const n = a.requests;
      const row: Row = { us: (a.server!.cpu_seconds * 1e6) / n, user_us: ((s1.utime - s0.utime) * 1e6) / n, sys_us: ((s1.stime - s0.stime) * 1e6) / n, main_thread_us: ((m1.utime + m1.stime - m0.utime - m0.stime) * 1e6) / n, vol_cs: (c1.vol - c0.vol) / n, invol_cs: (c1.invol - c0.invol) / n, p50_ms: a.p50_ms, load: loadAverage() };
      if (perf && !record) {
        const text = readFileSync(perfOut, "utf8");
        rmSync(perfOut, { force: true });
        for (const line of text.split("\n")) {
          const parts = line.split(",");
          const v = Number(parts[0]);
          const ev = parts[2];
          if (ev && Number.isFinite(v)) row[ev.replace("syscalls:sys_enter_", "sc_").replace("raw_syscalls:sys_enter", "syscalls")] = v / n;
        }
      }
      (res[b.name] ??= []).push(row);
      console.error(`round ${r} ${b.name}: ${Object.entries(row).filter(([, v]) => v !== 0).map(([k, v]) => `${k} ${v.toFixed(2)}`).join("  ")}`);
    }
  }
  const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
  const keys = [...new Set(Object.values(res).flatMap((rs) => rs.flatMap((r) => Object.keys(r))))];
  console.log(`\n| per request (median of ${rounds}) | ${builds.map((b) => b.name).join(" | ")} |\n| --- |${builds.map(() => " ---: |").join("")}`);
  for (const k of keys) {
    const vals = builds.map((b) => med(res[b.name]!.map((r) => r[k] ?? 0)));
    if (vals.every((v) => v === 0)) continue;
    console.log(`| ${k} | ${vals.map((v) => (v >= 10 ? v.toFixed(1) : v.toFixed(3))).join(" | ")} |`);
  }
} finally {
  for (const s of servers) await s.stop();
  await Promise.all([pg?.stop(), ...redises.map((r) => r.stop())]);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}
