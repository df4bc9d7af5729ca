/**
 * Cold start: time from exec to the first 200 on /healthz (and the CPU the process used until
 * then, every thread), and to the first 200 on /readyz (ours: the stores open and the HTTP app
 * built, which `serve` does once it listens and on the first request other than /healthz),
 * over BENCH_COLD_STARTS starts of
 * `feature-store serve` (embedded, on an already migrated data dir), and the binary's RSS when
 * idle. The same for a bare Bun.serve compiled the same way (bench/baseline-server.ts), so the
 * figure can be read as a ratio to what a compiled Bun executable costs anyway.
 *
 * `serve` runs with its defaults: one worker per core (the first answers /healthz and /readyz
 * here; the others start once it has).
 *
 * The starts of the variants are interleaved (ours, bare, ours, bare, ...), so that their ratio
 * is a same-run ratio even when the machine's load changes during the run.
 *
 * `bun bench/coldstart.ts` (BENCH_BINARY to skip the build; BENCH_COLD_COMPARE=/path/to/binary
 * to measure another build, e.g. main's, interleaved with ours and the bare server: an A/B).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../test/harness/services.ts";
import { ensureDir, log, memoryMiB, pinned, ROOT, round, run, settings, sleep, TMP_DIR } from "./lib/common.ts";
import type { ColdStartResults } from "./lib/report.ts";
import { buildBinary, cli } from "./lib/server.ts";

/** Polls /healthz as fast as it can; resolves with ms since `t0` at the first 200. */
async function firstHealthy(url: string, t0: number, alive: () => boolean, timeoutMs = 10_000): Promise<number> {
  for (;;) {
    try {
      const r = await fetch(url, { keepalive: false });
      if (r.status === 200) {
        await r.arrayBuffer();
        return performance.now() - t0;
      }
    } catch {
      /* not listening yet */
    }
    if (!alive()) throw new Error("the process exited before /healthz answered");
    if (performance.now() - t0 > timeoutMs) throw new Error(`/healthz did not answer within ${timeoutMs} ms`);
    await sleep(0.5);
  }
}

/**
 * CPU time a process (every thread) has used so far, ms, from /proc/<pid>/task/<tid>/schedstat
 * (nanoseconds on a CPU): the cold-start cost that other processes on a shared machine barely
 * change, unlike the wall-clock time. NaN where /proc has no schedstat.
 */
function cpuMsOf(pid: number): number {
  try {
    let ns = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
    return ns / 1e6;
  } catch {
    return Number.NaN;
  }
}

/** One program whose starts are measured: its command and environment for a port. */
interface Variant {
  cmd: (port: number) => string[];
  env: (port: number) => Record<string, string | undefined>;
  /** also time the first 200 on /readyz */
  ready?: boolean;
}

interface Measured {
  times: number[];
  cpu: number[];
  readyTimes: number[];
  idleRss: number;
}

/** One start of `v`: appended to `into`; the idle RSS is read when `idle`. */
async function startOnce(v: Variant, into: Measured, idle: boolean): Promise<void> {
  const port = await freePort();
  const t0 = performance.now();
  const proc = Bun.spawn({ cmd: pinned("server", v.cmd(port)), env: v.env(port), stdin: "ignore", stdout: "ignore", stderr: "ignore" });
  try {
    into.times.push(await firstHealthy(`http://127.0.0.1:${port}/healthz`, t0, () => proc.exitCode === null));
    into.cpu.push(cpuMsOf(proc.pid));
    if (v.ready) into.readyTimes.push(await firstHealthy(`http://127.0.0.1:${port}/readyz`, t0, () => proc.exitCode === null));
    if (idle) {
      await sleep(1000);
      into.idleRss = memoryMiB(proc.pid).rss;
    }
  } finally {
    // SIGTERM: with N workers (the default) the supervisor stops the others before it exits (a
    // SIGKILL would leave them starting, on the CPU of the next measured start, for up to 1 s)
    proc.kill("SIGTERM");
    const t = setTimeout(() => proc.kill("SIGKILL"), 10_000);
    await proc.exited;
    clearTimeout(t);
  }
}

/**
 * `starts` starts of each variant, interleaved (A B C A B C ...): a change of the machine's
 * load during the run weighs on every variant alike, so their ratios are same-run ratios.
 * One unmeasured start of each first (page cache).
 */
async function measure(variants: Variant[], starts: number): Promise<Measured[]> {
  const out = variants.map((): Measured => ({ times: [], cpu: [], readyTimes: [], idleRss: Number.NaN }));
  for (const v of variants) await startOnce(v, { times: [], cpu: [], readyTimes: [], idleRss: Number.NaN }, false);
  for (let i = 0; i < starts; i++) {
    for (const [k, v] of variants.entries()) await startOnce(v, out[k] as Measured, i === starts - 1);
  }
  return out;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? (s[(s.length - 1) / 2] as number) : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
};
const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)] as number;
};

/** The cold start of another feature-store binary, measured in the same run (BENCH_COLD_COMPARE). */
export interface ColdStartCompare {
  binary: string;
  median_ms: number;
  cpu_median_ms: number;
  ratio_to_bare: number | null;
  cpu_ratio_to_bare: number | null;
  ready_median_ms: number;
}

/**
 * Runs the cold-start measurement. `compare` (env BENCH_COLD_COMPARE): another feature-store
 * binary (e.g. main's), its starts interleaved with ours and the bare server's.
 */
export async function runColdStart(opts: { bin?: string; compare?: string } = {}): Promise<ColdStartResults & { compare?: ColdStartCompare }> {
  const bin = opts.bin ?? (await buildBinary());
  const compare = opts.compare ?? (process.env.BENCH_COLD_COMPARE || undefined);
  const starts = Math.max(1, Math.round(settings.coldStarts));
  const dataDir = mkdtempSync(join(tmpdir(), "fs-bench-cold-"));
  try {
    const stack = { DATA_DIR: dataDir };
    await cli(bin, stack, ["migrate"]);
    const env = () => ({ ...process.env, DATA_DIR: dataDir, LOG_LEVEL: "info", POSTGRES_URL: undefined, REDIS_URL: undefined });
    const serve = (b: string): Variant => ({ cmd: (p) => [b, "serve", "--port", String(p), "--host", "127.0.0.1"], env, ready: true });
    const variants: Variant[] = [serve(bin)];
    let bareAt = -1;
    try {
      const bareBin = join(ensureDir(TMP_DIR), "baseline-server");
      await run([process.execPath, "build", "--compile", "--minify", "--bytecode", join(ROOT, "bench", "baseline-server.ts"), "--outfile", bareBin], { timeoutMs: 120_000 });
      bareAt = variants.push({ cmd: () => [bareBin], env: (p) => ({ ...process.env, PORT: String(p) }) }) - 1;
    } catch (e) {
      log(`bare cold-start baseline skipped: ${(e as Error).message.split("\n")[0]}`);
    }
    const compareAt = compare ? variants.push(serve(compare)) - 1 : -1;
    log(`cold start: ${starts} starts each of ${bin} serve${bareAt >= 0 ? ", the bare server" : ""}${compare ? `, ${compare} serve` : ""}, interleaved`);
    const measured = await measure(variants, starts);
    const ours = measured[0] as Measured;
    const b = bareAt >= 0 ? measured[bareAt] : undefined;
    const bare: ColdStartResults["bare"] = b ? { median_ms: round(median(b.times), 2), cpu_median_ms: round(median(b.cpu), 2), idle_rss_mib: round(b.idleRss, 1) } : null;
    const res: ColdStartResults & { compare?: ColdStartCompare } = {
      starts,
      median_ms: round(median(ours.times), 2),
      p90_ms: round(quantile(ours.times, 0.9), 2),
      min_ms: round(Math.min(...ours.times), 2),
      max_ms: round(Math.max(...ours.times), 2),
      idle_rss_mib: round(ours.idleRss, 1),
      bare,
      ratio_to_bare: bare ? round(median(ours.times) / bare.median_ms, 2) : null,
      cpu_median_ms: round(median(ours.cpu), 2),
      cpu_ratio_to_bare: bare?.cpu_median_ms ? round(median(ours.cpu) / bare.cpu_median_ms, 2) : null,
      ready_median_ms: round(median(ours.readyTimes), 2),
      binary_mib: round(statSync(bin).size / 2 ** 20, 1),
    };
    log(`cold start: median ${res.median_ms} ms (p90 ${res.p90_ms}), ${res.cpu_median_ms} ms of CPU, idle RSS ${res.idle_rss_mib} MiB; bare ${bare?.median_ms ?? "-"} ms, ${bare?.cpu_median_ms ?? "-"} ms of CPU; ratio ${res.ratio_to_bare} (CPU ${res.cpu_ratio_to_bare}); ready (first 200 on /readyz) ${res.ready_median_ms} ms`);
    const c = compareAt >= 0 ? measured[compareAt] : undefined;
    if (compare && c) {
      res.compare = {
        binary: compare,
        median_ms: round(median(c.times), 2),
        cpu_median_ms: round(median(c.cpu), 2),
        ratio_to_bare: bare ? round(median(c.times) / bare.median_ms, 2) : null,
        cpu_ratio_to_bare: bare?.cpu_median_ms ? round(median(c.cpu) / bare.cpu_median_ms, 2) : null,
        ready_median_ms: round(median(c.readyTimes), 2),
      };
      log(`cold start of ${compare}: median ${res.compare.median_ms} ms, ${res.compare.cpu_median_ms} ms of CPU; ratio ${res.compare.ratio_to_bare} (CPU ${res.compare.cpu_ratio_to_bare}); ready ${res.compare.ready_median_ms} ms`);
    }
    return res;
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const r = await runColdStart();
  console.log(JSON.stringify(r, null, 2));
}
