/**
 * Where the mixed workload's slow online requests come from (`bun bench/mixed-probe.ts`), on
 * PostgreSQL + Redis: online 1 x 10 at BENCH_MIXED_RATE alone, then with each background
 * (BENCH_PROBE_PHASES, default `alone,write,batch,batch+write,alone`), each phase
 * BENCH_SECONDS on the same server. Per phase, beside the online p50 / p99 / p99.9:
 * - the serving thread's CPU and its run-queue wait (`/proc/<pid>/task/<tid>/schedstat`: time
 *   it was runnable but another task had the CPU), per thread of the server by name;
 * - Redis: its own CPU and run-queue wait, calls and microseconds per command
 *   (`INFO commandstats`), and the commands that took longer than 500 us (`SLOWLOG`);
 * - PostgreSQL: CPU of the postmaster's processes, and the most backends seen running at once;
 * - BENCH_PROBE_PERF=1: `perf sched` wake-up delays of the serving thread and Redis (perfSched);
 * - a variant with BUN_JSC_logGC=1 in its env: JavaScriptCore's collections per heap (gcFromLog).
 * Prints a table (stdout) and writes bench/results/mixed-probe.json.
 */
import { readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { redisCommand, startPostgres, startRedis, type PgService, type RedisService } from "../test/harness/services.ts";
import { cpuSeconds, ensureDir, loadAverage, log, RESULTS_DIR, round, settings } from "./lib/common.ts";
import { onlineOne, prng } from "./lib/dataset.ts";
import { buildBinary, loadData, postmasterPid, processFamily, startServer } from "./lib/server.ts";
import { attack, ensureVegeta, writeTargets } from "./lib/vegeta.ts";
import { mixedSettings, startBackground } from "./mixed.ts";

const phases = (process.env.BENCH_PROBE_PHASES ?? "alone,batch+write").split(",").map((s) => s.trim());

/** cpu ns, run-queue wait ns, time slices of one task. */
function schedstat(pid: number, tid = pid): [number, number, number] {
  try {
    const f = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").trim().split(" ").map(Number);
    return [f[0] ?? 0, f[1] ?? 0, f[2] ?? 0];
  } catch {
    return [0, 0, 0];
  }
}

/** schedstat of every thread of a process, by `comm` (threads of one name added up). */
function threads(pid: number): Record<string, [number, number, number]> {
  const out: Record<string, [number, number, number]> = {};
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const t of tids) {
    let name = "?";
    try {
      name = readFileSync(`/proc/${pid}/task/${t}/comm`, "utf8").trim();
    } catch {
      continue;
    }
    if (Number(t) === pid) name = "main(serving)";
    const s = schedstat(pid, Number(t));
    const o = (out[name] ??= [0, 0, 0]);
    o[0] += s[0];
    o[1] += s[1];
    o[2] += s[2];
  }
  return out;
}

async function redisInfo(port: number): Promise<Record<string, { calls: number; usec: number }>> {
  const text = await redisCommand(port, ["INFO", "commandstats"]);
  const out: Record<string, { calls: number; usec: number }> = {};
  for (const m of text.matchAll(/^cmdstat_(\w+):calls=(\d+),usec=(\d+)/gm)) out[m[1] as string] = { calls: Number(m[2]), usec: Number(m[3]) };
  return out;
}

/** Entries of a raw SLOWLOG GET reply: [id, time, usec, [args...], ...]: the durations only. */
async function slowlog(port: number): Promise<{ usec: number; cmd: string }[]> {
  // redisCommand parses only simple replies: read SLOWLOG through redis-cli.
  const p = Bun.spawnSync(["redis-cli", "-p", String(port), "--no-raw", "SLOWLOG", "GET", "100000"]);
  const lines = p.stdout.toString().split("\n");
  const out: { usec: number; cmd: string }[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = /^\s*\d+\) 1\) \(integer\) \d+$/.exec(lines[i] as string);
    if (!m) continue;
    const usec = Number(/\(integer\) (\d+)/.exec(lines[i + 2] ?? "")?.[1]);
    const cmd = /"([^"]*)"/.exec(lines[i + 3] ?? "")?.[1] ?? "?";
    out.push({ usec, cmd });
  }
  await redisCommand(port, ["SLOWLOG", "RESET"]);
  return out;
}

/** What a postmaster child is, from its process title (`postgres: parallel worker for PID 1`, `postgres: user db host SELECT`, `postgres: autovacuum worker`...). */
function pgKind(pid: number): string {
  try {
    const title = readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ").trim();
    if (title.includes("parallel worker")) return "parallel";
    if (title.includes("autovacuum")) return "autovacuum";
    if (/postgres: \S+ \S+ \S+/.test(title) && !/(writer|checkpointer|launcher|logger)/.test(title)) return "backend";
    return "other";
  } catch {
    return "gone";
  }
}

/** Running children of the postmaster by kind, and their CPU seconds by kind. */
function pgSample(postmaster: number): { running: Record<string, number>; cpu: Record<string, number> } {
  const running: Record<string, number> = {};
  const cpu: Record<string, number> = {};
  for (const p of processFamily(postmaster)) {
    if (p === postmaster) continue;
    try {
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      const k = pgKind(p);
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      cpu[k] = (cpu[k] ?? 0) + (Number(f[11]) + Number(f[12])) / 100;
      if (f[0] === "R") running[k] = (running[k] ?? 0) + 1;
    } catch {
      /* gone */
    }
  }
  return { running, cpu };
}

/**
 * BENCH_PROBE_PERF=1: `perf sched record` of the whole machine for BENCH_PROBE_PERF_SECONDS
 * (default 4) in the middle of a phase, then per task of interest (the serving thread, Redis):
 * the scheduling delay of each wake-up (runnable -> running: `perf sched timehist`'s "sch
 * delay"), and which tasks had the CPU in that window (run time by name).
 */
const PERF_SECONDS = Number(process.env.BENCH_PROBE_PERF_SECONDS ?? 4);

async function perfSched(label: string, tids: Record<string, number>): Promise<Record<string, unknown> | undefined> {
  if (process.env.BENCH_PROBE_PERF !== "1") return undefined;
  const file = join(RESULTS_DIR, "tmp", `perf-${label}.data`);
  ensureDir(join(RESULTS_DIR, "tmp"));
  const secs = PERF_SECONDS;
  const rec = Bun.spawn(["perf", "sched", "record", "-a", "-o", file, "--", "sleep", String(secs)], { stdout: "ignore", stderr: "ignore" });
  await rec.exited;
  const th = Bun.spawn(["perf", "sched", "timehist", "-i", file], { stdout: "pipe", stderr: "ignore" });
  const text = await new Response(th.stdout).text();
  await th.exited;
  const delays: Record<string, number[]> = {};
  const runs: Record<string, number[]> = {};
  const runBy: Record<string, number> = {};
  const byTid = new Map(Object.entries(tids).map(([k, v]) => [v, k]));
  for (const line of text.split("\n")) {
    const m = /^\s*[\d.]+\s+\[\d+\]\s+(.+?)\[(\d+)(?:\/(\d+))?\]\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)/.exec(line);
    if (!m) continue;
    const comm = (m[1] as string).trim();
    const tid = Number(m[2]);
    const delay = Number(m[5]);
    const run = Number(m[6]);
    const kind = comm.startsWith("postgres") ? "postgres" : comm.replace(/[:\d]+$/, "");
    runBy[kind] = (runBy[kind] ?? 0) + run;
    const who = byTid.get(tid);
    if (who !== undefined) {
      (delays[who] ??= []).push(delay);
      (runs[who] ??= []).push(run);
    }
  }
  rmSync(file, { force: true });
  const out: Record<string, unknown> = {};
  for (const [who, xs] of Object.entries(delays)) out[who] = { wakeups: xs.length, delay_ms_p50: round(pct(xs, 0.5), 3), p99: round(pct(xs, 0.99), 3), p999: round(pct(xs, 0.999), 3), max: round(pct(xs, 1), 3), over_2ms: xs.filter((x) => x > 2).length, run_ms_p99: round(pct(runs[who] ?? [], 0.99), 3), run_ms_max: round(pct(runs[who] ?? [], 1), 3), runs_over_5ms: (runs[who] ?? []).filter((x) => x > 5).length };
  out.run_ms_per_s_by_task = Object.fromEntries(Object.entries(runBy).sort((a, b) => b[1] - a[1]).slice(0, 12).map(([k, v]) => [k, round(v / secs, 1)]));
  return out;
}

/**
 * A variant run with BUN_JSC_logGC=1: JavaScriptCore's collections in the server's log between
 * two offsets, per heap (the first heap the log names is the serving thread's): collections by
 * kind, longest and total mutator pause (the `p=` of each increment).
 */
function gcFromLog(file: string, from: number, firstHeap: { ptr?: string }): { text: number; heaps: Record<string, unknown> } {
  let text = "";
  try {
    text = readFileSync(file, "latin1");
  } catch {
    return { text: 0, heaps: {} };
  }
  const heaps: Record<string, { eden: number; full: number; pause_max_ms: number; pause_total_ms: number; pauses_over_5ms: number }> = {};
  // the serving thread's heap is the first to collect (the lane's threads start on first use)
  firstHeap.ptr ??= /^\[GC<(0x[0-9a-f]+)>/m.exec(text)?.[1];
  for (const line of text.slice(from).split("\n")) {
    const m = /^\[GC<(0x[0-9a-f]+)>: (.*)$/.exec(line);
    if (!m) continue;
    const who = m[1] === firstHeap.ptr ? "serving" : `other-${(m[1] as string).slice(-6)}`;
    const h = (heaps[who] ??= { eden: 0, full: 0, pause_max_ms: 0, pause_total_ms: 0, pauses_over_5ms: 0 });
    const body = m[2] as string;
    if (body.includes("=> EdenCollection")) h.eden++;
    if (body.includes("=> FullCollection")) h.full++;
    const p = /p=([\d.]+)ms/.exec(body);
    if (p) {
      const ms = Number(p[1]);
      h.pause_total_ms = round(h.pause_total_ms + ms, 1);
      if (ms > h.pause_max_ms) h.pause_max_ms = round(ms, 2);
      if (ms > 5) h.pauses_over_5ms++;
    }
  }
  return { text: text.length, heaps };
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? 0 : (s[Math.min(s.length - 1, Math.floor(p * s.length))] as number);
};

interface Variant {
  name: string;
  bin?: string;
  /** more environment of its server */
  env?: Record<string, string>;
  /** PostgreSQL settings while its phases run (ALTER SYSTEM + reload; reset afterwards) */
  pg?: Record<string, string>;
}

/**
 * BENCH_PROBE_VARIANTS: a JSON list of {name, bin?, env?, pg?}: servers on the same PostgreSQL
 * and Redis (the data loaded once), measured in alternation, BENCH_PROBE_ROUNDS rounds.
 */
const variants: Variant[] = JSON.parse(process.env.BENCH_PROBE_VARIANTS ?? '[{"name":"default"}]');
const rounds = Number(process.env.BENCH_PROBE_ROUNDS ?? 1);

async function pgSet(url: string, settings: Record<string, string> | undefined, reset: boolean): Promise<void> {
  if (!settings) return;
  const { default: postgres } = await import("postgres");
  const sql = postgres(url, { max: 1 });
  try {
    for (const [k, v] of Object.entries(settings)) await sql.unsafe(reset ? `ALTER SYSTEM RESET ${k}` : `ALTER SYSTEM SET ${k} = '${v}'`);
    await sql`SELECT pg_reload_conf()`;
  } finally {
    await sql.end();
  }
}

if (import.meta.main) {
  const vegeta = await ensureVegeta();
  const defaultBin = await buildBinary();
  let pg: PgService | undefined;
  let redis: RedisService | undefined;
  const report: Record<string, unknown>[] = [];
  const servers: Awaited<ReturnType<typeof startServer>>[] = [];
  try {
    [pg, redis] = await Promise.all([startPostgres({ settings: { shared_buffers: "256MB" } }), startRedis()]);
    const now = Date.now();
    for (const v of variants) servers.push(await startServer(v.bin ?? defaultBin, { POSTGRES_URL: pg.url, REDIS_URL: redis.url, ...(v.env ?? {}) } as never, `probe-${v.name}`));
    await loadData(servers[0] as Awaited<ReturnType<typeof startServer>>, settings.entities, settings.historyDays, now);
    const rport = redis.port;
    const rpid = Number(/process_id:(\d+)/.exec(await redisCommand(rport, ["INFO", "server"]))?.[1]);
    const pm = postmasterPid(pg.dir) as number;
    await redisCommand(rport, ["CONFIG", "SET", "slowlog-log-slower-than", "500"]);
    await redisCommand(rport, ["CONFIG", "SET", "slowlog-max-len", "100000"]);
    const heapOf: Record<string, { ptr?: string }> = {};
    const rnd = prng(4711);
    const bodies = Array.from({ length: Math.min(20_000, settings.entities) }, () => onlineOne(Math.floor(rnd() * settings.entities)));
    for (let round_ = 0; round_ < rounds; round_++) {
      for (let vi = 0; vi < variants.length; vi++) {
        const v = variants[vi] as Variant;
        const server = servers[vi] as Awaited<ReturnType<typeof startServer>>;
        const file = writeTargets(`probe-online-${v.name}`, bodies.map((body) => ({ method: "POST" as const, url: `${server.url}/api/v1/features/online`, body, headers: { "x-api-key": server.key, "content-type": "application/json" } })));
        await pgSet(pg.url, v.pg, false);
        try {
          await attack(vegeta, { name: "warmup", targetsFile: file, rate: mixedSettings.rate, seconds: 2, discard: true });
          for (const phase of phases) {
            const kinds = phase === "alone" ? [] : phase.split("+");
            const bg = kinds.length > 0 ? startBackground(server, settings.entities, settings.historyDays, now, kinds) : undefined;
            if (bg) await Bun.sleep(1000);
            await slowlog(rport);
            const la = loadAverage();
            const t0 = performance.now();
            const th0 = threads(server.pid);
            const r0 = schedstat(rpid);
            const pg0 = processFamily(pm).reduce((s, p) => s + (cpuSeconds(p) || 0), 0);
            const cs0 = await redisInfo(rport);
            let maxBackends = 0;
            const runningSamples: number[] = [];
            const byKind: Record<string, number> = {};
            const cpuByKind: Record<string, number> = {};
            const sampler = setInterval(() => {
              const smp = pgSample(pm);
              const n = Object.values(smp.running).reduce((a, b) => a + b, 0);
              for (const [k, c] of Object.entries(smp.running)) byKind[k] = (byKind[k] ?? 0) + c;
              for (const [k, c] of Object.entries(smp.cpu)) cpuByKind[k] = Math.max(cpuByKind[k] ?? 0, c);
              runningSamples.push(n);
              if (n > maxBackends) maxBackends = n;
            }, 50);
            const logFile = join(RESULTS_DIR, "tmp", `server-probe-${v.name}.log`);
            const log0 = gcFromLog(logFile, Number.MAX_SAFE_INTEGER, heapOf[v.name] ??= {}).text;
            const attacking = attack(vegeta, { name: `probe-${phase}`, targetsFile: file, rate: mixedSettings.rate, seconds: settings.seconds, serverPid: server.pid });
            const perf = await Bun.sleep(Math.max(0, settings.seconds * 1000 - PERF_SECONDS * 1000) / 2).then(() => perfSched(`${v.name}-${round_}-${phase}`, { serving: server.pid, redis: rpid }));
            const res = await attacking;
            clearInterval(sampler);
            const gc = v.env?.BUN_JSC_logGC ? gcFromLog(logFile, log0, heapOf[v.name] as { ptr?: string }).heaps : undefined;
            const secs = (performance.now() - t0) / 1000;
            const th1 = threads(server.pid);
            const r1 = schedstat(rpid);
            const pg1 = processFamily(pm).reduce((s, p) => s + (cpuSeconds(p) || 0), 0);
            const cs1 = await redisInfo(rport);
            const slow = await slowlog(rport);
            const done = bg ? await bg.stop() : undefined;
            const per: Record<string, { cpu_pct: number; wait_ms_per_s: number; wait_us_per_slice: number }> = {};
            for (const [name, a] of Object.entries(th1)) {
              const b = th0[name] ?? [0, 0, 0];
              const slices = a[2] - b[2];
              const c = round(((a[0] - b[0]) / 1e9 / secs) * 100, 1);
              if (c < 0.5) continue;
              per[name] = { cpu_pct: c, wait_ms_per_s: round((a[1] - b[1]) / 1e6 / secs, 1), wait_us_per_slice: round(slices > 0 ? (a[1] - b[1]) / 1e3 / slices : 0, 1) };
            }
            const cmds: Record<string, { calls: number; us_per_call: number; busy_ms_per_s: number }> = {};
            for (const [k, val] of Object.entries(cs1)) {
              const b = cs0[k] ?? { calls: 0, usec: 0 };
              if (val.calls - b.calls <= 0) continue;
              cmds[k] = { calls: val.calls - b.calls, us_per_call: round((val.usec - b.usec) / (val.calls - b.calls), 1), busy_ms_per_s: round((val.usec - b.usec) / 1000 / secs, 1) };
            }
            const out = {
              variant: v.name,
              round: round_,
              phase,
              load_average: la,
              online: { p50: res.p50_ms, p99: res.p99_ms, p999: res.p999_ms, max: res.max_ms, errors: res.errors, top_errors: res.top_errors },
              perf,
              gc,
              server_threads: per,
              redis: {
                cpu_pct: round(((r1[0] - r0[0]) / 1e9 / secs) * 100, 1),
                wait_ms_per_s: round((r1[1] - r0[1]) / 1e6 / secs, 1),
                wait_us_per_slice: round(r1[2] - r0[2] > 0 ? (r1[1] - r0[1]) / 1e3 / (r1[2] - r0[2]) : 0, 1),
                commands: cmds,
                slow_over_500us: { n: slow.length, p50_us: pct(slow.map((s) => s.usec), 0.5), max_us: pct(slow.map((s) => s.usec), 1), by_cmd: slow.reduce<Record<string, number>>((o, s) => ((o[s.cmd] = (o[s.cmd] ?? 0) + 1), o), {}) },
              },
              postgres: { cpu_pct: round(((pg1 - pg0) / secs) * 100, 1), backends_running_max: maxBackends, backends_running_mean: round(runningSamples.reduce((a, b) => a + b, 0) / Math.max(1, runningSamples.length), 2), running_mean_by_kind: Object.fromEntries(Object.entries(byKind).map(([k, c]) => [k, round(c / Math.max(1, runningSamples.length), 2)])) },
              background: done,
            };
            report.push(out);
            const st = per["main(serving)"];
            log(`${v.name} r${round_} ${phase}: p50 ${res.p50_ms} p99 ${res.p99_ms} p99.9 ${res.p999_ms} err ${res.errors} | serving ${st?.cpu_pct}% wait ${st?.wait_ms_per_s} ms/s | redis ${out.redis.cpu_pct}% wait ${out.redis.wait_ms_per_s} ms/s, evalsha ${cmds.evalsha?.busy_ms_per_s ?? 0} ms/s, slow ${slow.length} max ${out.redis.slow_over_500us.max_us} us | pg ${out.postgres.cpu_pct}% running ${out.postgres.backends_running_mean} (max ${maxBackends}) ${JSON.stringify(out.postgres.running_mean_by_kind)} | load ${la} | bg ${done ? `${done.batches}b ${done.writes}w` : "-"}${res.errors > 0 ? ` errors ${JSON.stringify(res.top_errors)}` : ""}${perf ? `\n    perf ${JSON.stringify(perf)}` : ""}${gc ? `\n    gc ${JSON.stringify(gc)}` : ""}`);
          }
        } finally {
          await pgSet(pg.url, v.pg, true);
        }
      }
    }
  } finally {
    for (const s of servers) await s.stop();
    await Promise.all([pg?.stop(), redis?.stop()]);
  }
  // medians per variant and phase
  const med = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length === 0 ? Number.NaN : (s[Math.floor(s.length / 2)] as number);
  };
  for (const v of variants) {
    const of = (phase: string) => report.filter((r) => r.variant === v.name && r.phase === phase) as unknown as { online: { p99: number; p999: number } }[];
    const a = of("alone").map((r) => r.online.p99);
    for (const phase of phases.filter((p) => p !== "alone")) {
      const b = of(phase).map((r) => r.online.p99);
      const ratios = b.map((x, i) => round(x / (a[i] ?? Number.NaN), 2));
      log(`${v.name} ${phase}: p99 alone ${a.join("/")}, with ${b.join("/")}, ratios ${ratios.join("/")} (median ${med(ratios)})`);
    }
  }
  ensureDir(RESULTS_DIR);
  writeFileSync(join(RESULTS_DIR, `${process.env.BENCH_PROBE_OUT ?? "mixed-probe"}.json`), `${JSON.stringify(report, null, 2)}\n`);
  log("done");
  process.exit(0);
}
