/**
 * Where the CPU of one `materialize` into PostgreSQL + Redis goes: the same Parquet file as
 * bench/materialize.ts (BENCH_MATERIALIZE_ROWS, default 200,000 rows x 4 features), loaded by
 * each binary given (`NAME=BINARY ...`, alternating over PROFILE_ROUNDS rounds, each on a fresh
 * PostgreSQL and Redis), with the CPU seconds per million values of every process taking part,
 * read from /proc every 200 ms: the materialize process by thread, PostgreSQL by process kind
 * (the load's backends, the checkpointer, the WAL writer, ...) and redis-server; and the
 * statements that took the backends' time (pg_stat_statements: total ms, calls).
 *
 *   bun bench/materialize-profile.ts main=/work/bin/feature-store-main this=dist/feature-store
 *
 * PROFILE_PG_SETTINGS: extra PostgreSQL settings as JSON ({"shared_buffers": "256MB"}).
 * Prints one block per run and the medians per binary; nothing is written to bench/results.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import postgres from "postgres";
import type { Summary } from "../src/sources/materialize.ts";
import { startPostgres, startRedis } from "../test/harness/services.ts";
import { buildsOf, loadAverage, round, TMP_DIR, track } from "./lib/common.ts";
import { DEFS, writeFile } from "./materialize.ts";

const ROWS = Number(process.env.BENCH_MATERIALIZE_ROWS ?? 200_000);
const ROUNDS = Number(process.env.PROFILE_ROUNDS ?? 1);
const EXTRA = JSON.parse(process.env.PROFILE_PG_SETTINGS ?? "{}") as Record<string, string>;
const TICKS = 100; // USER_HZ

/** utime + stime of /proc/PID[/task/TID]/stat, seconds, and the comm. */
function stat(path: string): { cpu: number; comm: string; ppid: number } | undefined {
  try {
    const s = readFileSync(path, "utf8");
    const close = s.lastIndexOf(")");
    const comm = s.slice(s.indexOf("(") + 1, close);
    const f = s.slice(close + 2).split(" ");
    return { cpu: (Number(f[11]) + Number(f[12])) / TICKS, comm, ppid: Number(f[1]) };
  } catch {
    return undefined;
  }
}

/** Seconds waited on a run queue (/proc/.../schedstat: run ns, wait ns, slices). */
function waited(path: string): number {
  try {
    return Number(readFileSync(path, "utf8").split(" ")[1]) / 1e9;
  } catch {
    return 0;
  }
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ").trim();
  } catch {
    return "";
  }
}

/** PostgreSQL's own processes by title; any other child of the postmaster is a backend. */
const PG_AUX = ["checkpointer", "background writer", "walwriter", "autovacuum launcher", "autovacuum worker", "logical replication launcher", "archiver"];

/** The kind of a PostgreSQL process from its title ("postgres: checkpointer", "postgres: postgres feature_store 127.0.0.1(5432) idle"). */
function pgKind(title: string): string {
  const aux = PG_AUX.find((a) => title.startsWith(`postgres: ${a}`));
  return aux ?? "backend";
}

async function once(name: string, bin: string, file: string, root: string) {
  const dir = join(root, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "defs.yaml"), DEFS(file));
  const pg = await startPostgres({ settings: { synchronous_commit: "on", shared_preload_libraries: "pg_stat_statements", "pg_stat_statements.track": "all", ...EXTRA } });
  const redis = await startRedis();
  try {
    const env = { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", LOG_LEVEL: "warn", DATA_DIR: join(dir, "data"), POSTGRES_URL: pg.url, REDIS_URL: redis.url };
    for (const args of [["migrate"], ["register", "defs.yaml", "--tenant", "bench"]]) {
      const p = Bun.spawnSync([bin, ...args], { cwd: dir, env, stdout: "pipe", stderr: "pipe" });
      if (p.exitCode !== 0) throw new Error(`${args[0]}: ${p.stderr.toString()}`);
    }
    const sql = postgres(pg.url, { max: 1, onnotice: () => {} });
    await sql`CREATE EXTENSION IF NOT EXISTS pg_stat_statements`;
    await sql`SELECT pg_stat_statements_reset()`;
    const postmaster = Number(readFileSync(join(pg.dir, "data", "postmaster.pid"), "utf8").split("\n")[0]);
    const redisPid = readdirSync("/proc").map(Number).find((p) => p > 0 && stat(`/proc/${p}/stat`)?.comm.startsWith("redis-server") && cmdline(p).includes(`:${redis.port}`));
    /** last CPU seen per key (a backend's pid, a thread) and at the start */
    const last = new Map<string, { kind: string; cpu: number; wait: number }>();
    const first = new Map<string, { cpu: number; wait: number }>();
    const sample = (matPid: number | undefined) => {
      for (const p of readdirSync("/proc")) {
        const pid = Number(p);
        if (!(pid > 0)) continue;
        const st = stat(`/proc/${pid}/stat`);
        if (!st) continue;
        let kind: string | undefined;
        if (pid === postmaster) kind = "pg postmaster";
        else if (st.ppid === postmaster) kind = `pg ${pgKind(cmdline(pid))}`;
        else if (pid === redisPid) kind = "redis-server";
        if (kind) {
          const key = `p${pid}`;
          const wait = waited(`/proc/${pid}/schedstat`);
          if (!first.has(key)) first.set(key, { cpu: st.cpu, wait });
          last.set(key, { kind, cpu: st.cpu, wait });
        }
      }
      if (matPid !== undefined) {
        try {
          for (const t of readdirSync(`/proc/${matPid}/task`)) {
            const st = stat(`/proc/${matPid}/task/${t}/stat`);
            if (!st) continue;
            const key = `t${t}`;
            if (!first.has(key)) first.set(key, { cpu: 0, wait: 0 });
            // the main thread's name is the binary's (cut to 15 characters)
            const comm = t === String(matPid) ? "main" : st.comm;
            last.set(key, { kind: `feature-store ${comm}`, cpu: st.cpu, wait: waited(`/proc/${matPid}/task/${t}/schedstat`) });
          }
        } catch {}
      }
    };
    sample(undefined);
    const load = loadAverage();
    const t0 = performance.now();
    const proc = track(Bun.spawn([bin, "materialize", "bench_users", "--tenant", "bench", "--json"], { cwd: dir, env, stdout: "pipe", stderr: "pipe" }));
    const timer = setInterval(() => sample(proc.pid), 200);
    const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    clearInterval(timer);
    if ((await proc.exited) !== 0) throw new Error(`materialize: ${err}`);
    if (process.env.PROFILE_STDERR) console.log(err.trim());
    sample(undefined);
    const wall = (performance.now() - t0) / 1000;
    const s = JSON.parse(out.trim().split("\n").at(-1) as string) as Summary;
    const byKind = new Map<string, { cpu: number; wait: number }>();
    for (const [key, v] of last) {
      const k = byKind.get(v.kind) ?? byKind.set(v.kind, { cpu: 0, wait: 0 }).get(v.kind) as { cpu: number; wait: number };
      const f = first.get(key) ?? { cpu: 0, wait: 0 };
      k.cpu += v.cpu - f.cpu;
      k.wait += v.wait - f.wait;
    }
    const stmts = await sql<{ query: string; calls: number; total: number; rows: number }[]>`
      SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS query, calls::int, round(total_exec_time)::int AS total, rows::int
      FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 8`;
    await sql.end();
    return { name, load, wall, values: s.values_stored, rate: Math.round(s.values_stored / (s.elapsed_ms / 1000)), timings: s.timings, byKind, stmts };
  } finally {
    await redis.stop().catch(() => {});
    await pg.stop().catch(() => {});
  }
}

const builds = buildsOf(process.argv.slice(2), "bun bench/materialize-profile.ts NAME=BINARY ...");
const root = join(TMP_DIR, "materialize-profile");
rmSync(root, { recursive: true, force: true });
mkdirSync(root, { recursive: true });
const file = join(root, "users.parquet");
writeFile(file, 0, ROWS);
const rates = new Map<string, number[]>();
for (let r = 0; r < ROUNDS; r++) {
  for (const b of builds) {
    const x = await once(b.name, b.bin, file, root);
    (rates.get(b.name) ?? rates.set(b.name, []).get(b.name))?.push(x.rate);
    const perM = (cpu: number) => round((cpu / x.values) * 1e6, 2);
    const lines = [`## ${x.name} round ${r + 1}: ${x.rate.toLocaleString("en-US")} values/s (${x.values} values, ${round(x.wall, 1)} s, load ${x.load} -> ${loadAverage()}); timings ${JSON.stringify(x.timings)}`];
    let total = 0;
    for (const [kind, { cpu, wait }] of [...x.byKind].sort((a, b) => b[1].cpu - a[1].cpu)) {
      total += cpu;
      if (cpu >= 0.01) lines.push(`  ${kind.padEnd(40)} ${round(cpu, 2).toFixed(2).padStart(7)} CPU-s  ${perM(cpu).toFixed(2).padStart(6)} per M values  ${round(wait, 2).toFixed(2).padStart(6)} s run-queue wait`);
    }
    lines.push(`  ${"total".padEnd(40)} ${round(total, 2).toFixed(2).padStart(7)} CPU-s  ${perM(total).toFixed(2).padStart(6)} per M values (${round(total / x.wall, 2)} cores)`);
    for (const st of x.stmts) lines.push(`  pg ${String(st.total).padStart(7)} ms ${String(st.calls).padStart(6)} calls  ${st.query}`);
    console.log(lines.join("\n"));
  }
}
for (const [name, xs] of rates) console.log(`${name}: values/s ${xs.join(", ")}; median ${[...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]}`);
rmSync(root, { recursive: true, force: true });
process.exit(0);
