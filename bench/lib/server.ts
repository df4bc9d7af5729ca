/**
 * The system under test: builds dist/feature-store, runs its CLI (migrate, keys, register),
 * starts `serve` pinned to the server core, loads the data set over HTTP and reads /metrics.
 * Also the bare Bun.serve baseline (bench/baseline-server.ts) and pinning of the stores.
 */
import { existsSync, openSync, closeSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { freePort, redisCommand, type RedisService } from "../../test/harness/services.ts";
import { ALL_CORES, CORES, cpuSeconds, ensureDir, log, pinned, pinningActive, ROOT, round, run, settings, sleep, suspendPinning, TMP_DIR, track } from "./common.ts";
import { ENTITY_TYPE, FEATURES, record, registerYaml, TENANT } from "./dataset.ts";

/** Builds dist/feature-store with `bun run build` (or uses BENCH_BINARY). */
export async function buildBinary(): Promise<string> {
  if (settings.binary) {
    if (!existsSync(settings.binary)) throw new Error(`BENCH_BINARY ${settings.binary} does not exist`);
    log(`using prebuilt binary ${settings.binary}`);
    return settings.binary;
  }
  log("building dist/feature-store (bun run build)");
  await run([process.execPath, "run", "build"], { timeoutMs: 300_000 });
  return join(ROOT, "dist", "feature-store");
}

/** Environment of every feature-store process of one stack. */
export interface StackEnv {
  DATA_DIR?: string;
  POSTGRES_URL?: string;
  REDIS_URL?: string;
}

function envOf(stack: StackEnv): Record<string, string | undefined> {
  // one process unless the stack says otherwise (bench/scaling.ts): the CPU per request is
  // sampled from the server's pid, which with N workers would see only its share of the requests
  const env: Record<string, string | undefined> = { ...process.env, LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? "info", SERVE_WORKERS: "1" };
  delete env.POSTGRES_URL;
  delete env.REDIS_URL;
  delete env.DATA_DIR;
  return { ...env, ...stack };
}

/** Runs a CLI command of the binary and returns its stdout. */
export function cli(bin: string, stack: StackEnv, args: string[]): Promise<string> {
  return run([bin, ...args], { env: envOf(stack), timeoutMs: 300_000 });
}

/** A running `feature-store serve`. */
export interface Server {
  url: string;
  pid: number;
  key: string;
  proc: Subprocess;
  stop(): Promise<void>;
}

/** Waits until GET url answers 200, failing after `timeoutMs` or when `alive()` turns false. */
export async function waitHttp(url: string, timeoutMs: number, alive: () => boolean = () => true): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const r = await fetch(url);
      await r.arrayBuffer();
      if (r.status === 200) return;
    } catch {
      /* not listening yet */
    }
    if (!alive()) throw new Error(`${url}: the process exited before it answered`);
    if (Date.now() > deadline) throw new Error(`${url} did not answer 200 within ${timeoutMs} ms`);
    await sleep(20);
  }
}

/**
 * Prepares the stack's database (migrate, an admin key, the 10 definitions) and starts the
 * server pinned to the server core. Returns once /readyz answers 200.
 */
export async function startServer(bin: string, stack: StackEnv, name: string): Promise<Server> {
  const env = envOf(stack);
  await cli(bin, stack, ["migrate"]);
  const keyOut = await cli(bin, stack, ["keys", "create", "--tenant", TENANT, "--scopes", "admin"]);
  const key = keyOut.trim().split("\n").pop()?.trim() ?? "";
  if (!key.startsWith("fs_")) throw new Error(`keys create printed no key: ${keyOut}`);
  const defs = join(ensureDir(TMP_DIR), "bench-features.yaml");
  writeFileSync(defs, registerYaml());
  await cli(bin, stack, ["register", defs, "--tenant", TENANT]);

  const port = await freePort();
  const logFile = join(TMP_DIR, `server-${name}.log`);
  const fd = openSync(logFile, "w");
  const proc = track(Bun.spawn({
    cmd: pinned("server", [bin, "serve", "--port", String(port), "--host", "127.0.0.1"]),
    env,
    stdin: "ignore",
    stdout: fd,
    stderr: fd,
  }));
  closeSync(fd);
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitHttp(`${url}/readyz`, 30_000, () => proc.exitCode === null);
  } catch (e) {
    proc.kill("SIGKILL");
    throw new Error(`${(e as Error).message}\n${readFileSync(logFile, "utf8").slice(-3000)}`);
  }
  return {
    url,
    pid: proc.pid,
    key,
    proc,
    stop: async () => {
      proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), 15_000);
      await proc.exited;
      clearTimeout(t);
    },
  };
}

/**
 * POSTs JSON with the API key; throws on a non-2xx answer. Up to `retries` times, a 503 (load
 * shedding) is retried after its Retry-After, as a well-behaved client does.
 */
export async function post(server: Pick<Server, "url" | "key">, path: string, body: string, accept = "application/json", retries = 10): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    const r = await fetch(`${server.url}${path}`, { method: "POST", body, headers: { "content-type": "application/json", "x-api-key": server.key, accept } });
    const text = await r.text();
    if (r.ok) return text;
    if (r.status === 503 && attempt < retries) {
      shed++;
      await sleep(Math.min(5, Number(r.headers.get("retry-after") ?? 1) || 1) * 1000);
      continue;
    }
    throw new Error(`POST ${path}: ${r.status} ${text.slice(0, 500)}`);
  }
}

/** 503s retried by {@link post} so far (load shedding seen while loading data). */
export let shed = 0;

/**
 * Writes `entities` x 10 features x `days` event times over HTTP (oldest day first, 1,000
 * records per request, 4 requests in flight). Returns values written per second.
 */
export async function loadData(server: Server, entities: number, days: number, now: number): Promise<{ values: number; seconds: number; values_per_s: number; retried_503?: number }> {
  const shed0 = shed;
  const perReq = 1000;
  const jobs: (() => string)[] = [];
  for (let d = 0; d < days; d++) {
    for (let start = 0; start < entities; start += perReq) {
      const end = Math.min(entities, start + perReq);
      jobs.push(() => {
        const records = [];
        for (let i = start; i < end; i++) records.push(record(i, d, days, now));
        return JSON.stringify({ entity_type: ENTITY_TYPE, records });
      });
    }
  }
  const t0 = performance.now();
  let next = 0;
  let written = 0;
  // Days are written in order (a day's writes complete before the next day's start), so the
  // online value is the newest day.
  for (let d = 0; d < days; d++) {
    const dayJobs = jobs.slice((d * jobs.length) / days, ((d + 1) * jobs.length) / days);
    next = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (next < dayJobs.length) {
          const job = dayJobs[next++] as () => string;
          const res = JSON.parse(await post(server, "/api/v1/features/write", job(), "application/json", 30)) as { written: number };
          written += res.written;
        }
      }),
    );
  }
  const seconds = (performance.now() - t0) / 1000;
  return { values: written, seconds: round(seconds, 1), values_per_s: round(written / seconds, 0), retried_503: shed - shed0 };
}

/** Sum of `feature_store_cache_requests_total` by result. */
export async function cacheCounters(server: Pick<Server, "url">): Promise<{ hit: number; miss: number; error: number }> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const get = (r: string): number => Number(new RegExp(`^feature_store_cache_requests_total\\{result="${r}"\\} (\\S+)`, "m").exec(text)?.[1] ?? Number.NaN);
  return { hit: get("hit"), miss: get("miss"), error: get("error") };
}

/** Hit rate between two readings of {@link cacheCounters}. */
export function hitRate(a: { hit: number; miss: number; error: number }, b: { hit: number; miss: number; error: number }): number | null {
  const hits = b.hit - a.hit;
  const total = hits + (b.miss - a.miss) + (b.error - a.error);
  return total > 0 ? round(hits / total, 4) : null;
}

// ───────────────────────────── the bare baseline ─────────────────────────────

/** The bare Bun.serve baseline: POST /bytes/N answers N bytes of JSON. */
export interface Baseline {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

export async function startBaseline(): Promise<Baseline> {
  const port = await freePort();
  const proc = track(Bun.spawn({
    cmd: pinned("server", [process.execPath, join(ROOT, "bench", "baseline-server.ts")]),
    env: { ...process.env, PORT: String(port) },
    stdin: "ignore",
    stdout: "ignore",
    stderr: "inherit",
  }));
  const url = `http://127.0.0.1:${port}`;
  await waitHttp(`${url}/healthz`, 10_000, () => proc.exitCode === null);
  return {
    url,
    pid: proc.pid,
    stop: async () => {
      proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}

// ───────────────────────────── pinning the stores ─────────────────────────────

/** Pids of a process and its children (one level: enough for postgres backends). */
export function processFamily(pid: number): number[] {
  const out = [pid];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** Sets the CPU affinity of a process, its threads and its children. */
async function setAffinity(pid: number, cores: string): Promise<void> {
  for (const p of processFamily(pid)) {
    try {
      await run(["taskset", "-a", "-p", "-c", cores, String(p)], { timeoutMs: 5000 });
    } catch {
      /* a child that just exited */
    }
  }
}

/** Pins a process, its threads and its children to the server core (no-op without pinning). */
export async function pinToServerCore(pid: number): Promise<void> {
  if (pinningActive()) await setAffinity(pid, CORES.server);
}

/**
 * Lets the given processes (and their threads and children) run on every core until `repin`,
 * and starts no pinned process meanwhile: the layout a user's deployment has. A no-op without
 * pinning.
 */
export async function freeCores(pids: number[]): Promise<{ repin(): Promise<void> }> {
  if (!pinningActive()) return { repin: async () => undefined };
  for (const pid of pids) await setAffinity(pid, ALL_CORES);
  const suspended = suspendPinning();
  return {
    repin: async () => {
      suspended.resume();
      for (const pid of pids) await setAffinity(pid, CORES.server);
    },
  };
}

/** The pid of a harness Redis server (INFO server). */
export async function redisPid(redis: RedisService): Promise<number> {
  const info = await redisCommand(redis.port, ["INFO", "server"]);
  return Number(/process_id:(\d+)/.exec(info)?.[1] ?? Number.NaN);
}

/** CPU seconds of a process family (postgres: the postmaster and its backends). */
export function familyCpuSeconds(pid: number): number {
  return processFamily(pid).reduce((s, p) => s + (cpuSeconds(p) || 0), 0);
}

/** The postmaster pid of a harness PostgreSQL (first line of data/postmaster.pid). */
export function postmasterPid(pgDir: string): number | undefined {
  try {
    return Number(readFileSync(join(pgDir, "data", "postmaster.pid"), "utf8").split("\n")[0]);
  } catch {
    return undefined;
  }
}

export { FEATURES, TENANT };
