/**
 * What every benchmark shares: settings from the environment, paths, process statistics read
 * from /proc, CPU pinning, and a description of the machine and the commit being measured.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join, resolve } from "node:path";

/** Repository root (bench/lib/ is two levels below it). */
export const ROOT = resolve(import.meta.dir, "..", "..");
/** Results (committed: latest.md and JSON) and scratch files (gitignored). */
export const RESULTS_DIR = join(ROOT, "bench", "results");
export const TMP_DIR = join(RESULTS_DIR, "tmp");
/** Where tools installed by the benchmark live (gitignored). */
export const CACHE_BIN = join(ROOT, ".cache", "bin");

function initialLoad(): number {
  try {
    return Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]);
  } catch {
    return 0;
  }
}

/** 1-minute load average when the suite started. */
export const LOAD_AT_START = initialLoad();

/**
 * The builds of an A/B tool's command line (`NAME=BINARY`, or `bare` and the like as both); prints
 * `usage` and exits 2 when there is none.
 */
export function buildsOf(argv: string[], usage: string): { name: string; bin: string }[] {
  const builds = argv.map((a) => {
    const i = a.indexOf("=");
    return i > 0 ? { name: a.slice(0, i), bin: a.slice(i + 1) } : { name: a, bin: a };
  });
  if (builds.length === 0) {
    console.error(`usage: ${usage}`);
    process.exit(2);
  }
  return builds;
}

export function num(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name}: expected a non-negative number, got ${JSON.stringify(raw)}`);
  return n;
}

function list(name: string): Set<string> {
  return new Set(
    (process.env[name] ?? "")
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean),
  );
}

/** Every knob of the benchmark suite, read once. All durations in seconds. */
export const settings = {
  /** Measured duration of each steady (constant-rate) run. */
  seconds: num("BENCH_SECONDS", 10),
  /** Warm-up at the same rate before each steady run (not recorded). */
  warmupSeconds: num("BENCH_WARMUP_SECONDS", 2),
  /** Duration of each step of a saturation search. */
  stepSeconds: num("BENCH_STEP_SECONDS", 3),
  /** Entities loaded (each with 10 features). */
  entities: num("BENCH_ENTITIES", 20_000),
  /** Days of history per entity (values at one event time per day). */
  historyDays: num("BENCH_HISTORY_DAYS", 3),
  /** Offered rate of the online 1 x 10 steady run (the p99 target is stated at 5,000/s). */
  rate1x10: num("BENCH_RATE_1X10", 5000),
  /** A saturation step passes with p99 at most this (ms), errors < 1% and >= 95% of the offered rate answered. */
  satP99Ms: num("BENCH_SAT_P99_MS", 25),
  /** Starts of the cold-start measurement. */
  coldStarts: num("BENCH_COLD_STARTS", 20),
  /**
   * Pin the server (and its stores) and the load generator to separate cores: 1 always, 0
   * never, unset ("auto") only when the machine is otherwise idle (1-minute load average < 0.5
   * at start). On a shared, busy machine pinning made runs much noisier (another process on
   * the pinned core stalls the server), so auto leaves the scheduler free there.
   */
  pin: process.env.BENCH_PIN === undefined || process.env.BENCH_PIN === "auto" ? LOAD_AT_START < 0.5 : num("BENCH_PIN", 1) !== 0,
  /** Use this binary instead of building dist/feature-store. */
  binary: process.env.BENCH_BINARY,
  /** Parts to skip / to run exclusively: micro, embedded, redis, saturation, mixed, coldstart, ingest, feast. */
  skip: list("BENCH_SKIP"),
  only: list("BENCH_ONLY"),
  /** Ingest: events sent per measurement, and per-message feature count. */
  ingestEvents: num("BENCH_INGEST_EVENTS", 50_000),
} as const;

/** The stacks of the load part, and the parts each stack runs on its loaded server. */
const STACKS = ["embedded", "redis"];
const STACK_PARTS = ["saturation", "steady", "mixed"];

/**
 * Whether a part of the suite should run (BENCH_ONLY wins over BENCH_SKIP). A stack named alone
 * in BENCH_ONLY runs all its parts (`redis`); a stack part named alone runs on every stack
 * (`mixed`); both narrow each other (`redis,mixed`).
 */
export function enabled(part: string): boolean {
  const only = settings.only;
  if (only.size === 0) return !settings.skip.has(part);
  if (only.has(part)) return true;
  if (STACKS.includes(part)) return !STACKS.some((s) => only.has(s)) && STACK_PARTS.some((p) => only.has(p));
  if (STACK_PARTS.includes(part)) return !STACK_PARTS.some((p) => only.has(p)) && STACKS.some((s) => only.has(s));
  return false;
}

/** Child processes to kill if the suite exits early (Ctrl-C, an exception). */
const children = new Set<{ pid: number; exitCode: number | null; kill(sig?: number | NodeJS.Signals): void }>();
let exitHook = false;

/** Registers a child process to be killed when this process exits before stopping it. */
export function track<T extends { pid: number; exitCode: number | null; kill(sig?: number | NodeJS.Signals): void; exited: Promise<number> }>(proc: T): T {
  children.add(proc);
  void proc.exited.then(() => children.delete(proc));
  if (!exitHook) {
    exitHook = true;
    process.on("exit", () => {
      for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
    });
  }
  return proc;
}

export function ensureDir(dir: string): string {
  mkdirSync(dir, { recursive: true });
  return dir;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Logs progress to stderr with the elapsed time since the suite started. */
const T0 = performance.now();
export function log(msg: string): void {
  const s = ((performance.now() - T0) / 1000).toFixed(1).padStart(6);
  process.stderr.write(`[bench ${s}s] ${msg}\n`);
}

// ───────────────────────────── CPU pinning ─────────────────────────────

const NCPU = cpus().length;
const HAS_TASKSET = Bun.which("taskset") !== null;

/** Cores for the roles: the server (and the services it talks to) vs the load generator. */
export const CORES = {
  server: NCPU >= 2 ? "0" : "0",
  generator: NCPU >= 2 ? String(NCPU - 1) : "0",
};

/** Every core, as a taskset list. */
export const ALL_CORES = `0-${NCPU - 1}`;

let pinningSuspended = false;

/** Whether processes started now are pinned (BENCH_PIN on, taskset present, >= 2 cores, not suspended). */
export function pinningActive(): boolean {
  return settings.pin && HAS_TASKSET && NCPU >= 2 && !pinningSuspended;
}

/**
 * Suspends pinning for processes started from now on (the load generator of the mixed workload's
 * free layout) until `resume` is called; processes already running keep their affinity.
 */
export function suspendPinning(): { resume(): void } {
  pinningSuspended = true;
  return { resume: () => void (pinningSuspended = false) };
}

/** Prefixes `cmd` with `taskset -c CORES` when pinning is on and possible. */
export function pinned(role: keyof typeof CORES, cmd: string[]): string[] {
  if (!pinningActive()) return cmd;
  return ["taskset", "-c", CORES[role], ...cmd];
}

// ───────────────────────────── /proc ─────────────────────────────

const CLK_TCK = 100;

/** User + system CPU seconds of a process (all threads), or NaN when it is gone; with `tid`, of that one thread (the main thread's tid is the pid). */
export function cpuSeconds(pid: number, tid?: number): number {
  try {
    const stat = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // fields[0] is field 3 (state): utime is field 14, stime field 15
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return Number.NaN;
  }
}

/** VmRSS and VmHWM (peak) of a process in MiB. */
export function memoryMiB(pid: number): { rss: number; hwm: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? Number.NaN);
    return { rss: kb("VmRSS") / 1024, hwm: kb("VmHWM") / 1024 };
  } catch {
    return { rss: Number.NaN, hwm: Number.NaN };
  }
}

/** Resets a process's peak RSS (VmHWM) so the next reading covers one scenario only. */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, "5");
    return true;
  } catch {
    return false;
  }
}

/**
 * Samples a process while a scenario runs: CPU seconds used and peak RSS (the maximum of
 * VmHWM after a reset and of VmRSS samples every 100 ms, whichever the kernel allows).
 */
export class ProcSampler {
  private cpu0: number;
  private t0 = performance.now();
  private peak = 0;
  private timer: ReturnType<typeof setInterval>;

  constructor(readonly pid: number) {
    resetPeakRss(pid);
    this.cpu0 = cpuSeconds(pid);
    this.timer = setInterval(() => {
      const m = memoryMiB(pid);
      if (m.rss > this.peak) this.peak = m.rss;
    }, 100);
  }

  /** CPU use as a percentage of one core, and peak RSS (MiB) since the sampler started. */
  stop(): { cpu_percent: number; cpu_seconds: number; peak_rss_mib: number } {
    clearInterval(this.timer);
    const secs = (performance.now() - this.t0) / 1000;
    const used = cpuSeconds(this.pid) - this.cpu0;
    const m = memoryMiB(this.pid);
    return { cpu_percent: round((used / secs) * 100, 1), cpu_seconds: round(used, 2), peak_rss_mib: round(Math.max(this.peak, m.hwm || 0, m.rss || 0), 1) };
  }
}

/** Load average (1 minute), to show how busy the machine was. */
export function loadAverage(): number {
  try {
    return Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]);
  } catch {
    return Number.NaN;
  }
}

// ───────────────────────────── machine and commit ─────────────────────────────

/** The commit of the work tree, read from .git without running git. */
export function gitCommit(): string {
  try {
    const gitDir = join(ROOT, ".git");
    const head = readFileSync(join(gitDir, "HEAD"), "utf8").trim();
    if (!head.startsWith("ref: ")) return head;
    const ref = head.slice(5);
    const loose = join(gitDir, ref);
    if (existsSync(loose)) return readFileSync(loose, "utf8").trim();
    const packed = readFileSync(join(gitDir, "packed-refs"), "utf8");
    for (const line of packed.split("\n")) if (line.endsWith(` ${ref}`)) return line.split(" ")[0] ?? "unknown";
  } catch {
    /* not a git checkout */
  }
  return "unknown";
}

/** nproc, CPU model, memory, kernel, Bun version, commit. */
export function machineInfo(): Record<string, string | number> {
  let model = cpus()[0]?.model ?? "unknown";
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"));
    if (m?.[1]) model = m[1].trim();
  } catch {
    /* keep os.cpus() */
  }
  let kernel = "unknown";
  try {
    kernel = readFileSync("/proc/sys/kernel/osrelease", "utf8").trim();
  } catch {
    /* not linux */
  }
  return {
    nproc: NCPU,
    cpu_model: model,
    memory_gib: round(totalmem() / 2 ** 30, 1),
    kernel,
    bun: Bun.version,
    commit: gitCommit(),
    pinned: settings.pin && HAS_TASKSET && NCPU >= 2 ? `server+stores cpu ${CORES.server}, load generator cpu ${CORES.generator}` : `no (BENCH_PIN=${process.env.BENCH_PIN ?? "auto"}, load average at start ${LOAD_AT_START})`,
  };
}

export function round(x: number, digits = 2): number {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Runs a command to completion; throws with its output when it fails. */
export async function run(cmd: string[], opts: { cwd?: string; env?: Record<string, string | undefined>; timeoutMs?: number } = {}): Promise<string> {
  const proc = Bun.spawn({ cmd, cwd: opts.cwd ?? ROOT, env: opts.env ?? process.env, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), opts.timeoutMs ?? 300_000);
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  if (code !== 0) throw new Error(`${cmd.join(" ")} exited ${code}:\n${(out + err).trim().split("\n").slice(-30).join("\n")}`);
  return out;
}
