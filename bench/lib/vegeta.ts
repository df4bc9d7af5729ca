/**
 * The load generator: vegeta (open-loop, constant arrival rate: a request is sent on schedule
 * whether or not earlier ones have answered, so a slow server cannot hide its queueing delay
 * from the percentiles). Installed by the suite itself with `go install` at a pinned version.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CACHE_BIN, ensureDir, log, pinned, ProcSampler, round, run, TMP_DIR } from "./common.ts";

/** The pinned load generator version. */
export const VEGETA_MODULE = "github.com/tsenart/vegeta/v12";
export const VEGETA_VERSION = "v12.13.0";

/** Path of the vegeta binary, installing it first when it is missing or another version. */
export async function ensureVegeta(): Promise<string> {
  const bin = join(CACHE_BIN, "vegeta");
  const stamp = join(CACHE_BIN, "vegeta.version");
  if (existsSync(bin) && existsSync(stamp) && readFileSync(stamp, "utf8").trim() === VEGETA_VERSION) return bin;
  const go = Bun.which("go") ?? (existsSync("/usr/local/go/bin/go") ? "/usr/local/go/bin/go" : null);
  if (go === null) throw new Error("the load benchmark needs Go to install vegeta (`go install`); Go was not found on PATH");
  ensureDir(CACHE_BIN);
  log(`installing vegeta ${VEGETA_VERSION} (go install) into ${CACHE_BIN}`);
  await run([go, "install", `${VEGETA_MODULE}@${VEGETA_VERSION}`], {
    env: { ...process.env, GOBIN: CACHE_BIN, GOFLAGS: "-buildvcs=false", CGO_ENABLED: "0" },
    timeoutMs: 600_000,
  });
  writeFileSync(stamp, `${VEGETA_VERSION}\n`);
  return bin;
}

/** One request vegeta sends (it cycles through a targets file in order). */
export interface Target {
  method: "GET" | "POST";
  url: string;
  body?: string;
  headers?: Record<string, string>;
}

/** Writes targets in vegeta's JSON format; returns the file path. */
/**
 * The targets file of online lookups `bodies` against `server` (its key sent), or against the
 * bare baseline's `/bytes/{size}` when `bare` (a body of the same size, the same requests).
 */
export function onlineTargetsFile(name: string, server: { url: string; key?: string }, bare: boolean, bodies: readonly string[], size: number): string {
  return writeTargets(
    name,
    bodies.map((body) => ({
      method: "POST" as const,
      url: bare ? `${server.url}/bytes/${size}` : `${server.url}/api/v1/features/online`,
      body,
      headers: { "x-api-key": server.key ?? "none", "content-type": "application/json" },
    })),
  );
}

export function writeTargets(name: string, targets: Iterable<Target>): string {
  const file = join(ensureDir(TMP_DIR), `targets-${name}.jsonl`);
  const lines: string[] = [];
  for (const t of targets) {
    const header: Record<string, string[]> = {};
    for (const [k, v] of Object.entries(t.headers ?? {})) header[k] = [v];
    lines.push(JSON.stringify({ method: t.method, url: t.url, header, ...(t.body !== undefined ? { body: Buffer.from(t.body).toString("base64") } : {}) }));
  }
  writeFileSync(file, `${lines.join("\n")}\n`);
  return file;
}

/** Latency and throughput of one constant-rate run. Latencies in milliseconds. */
export interface AttackResult {
  offered_rps: number;
  seconds: number;
  requests: number;
  errors: number;
  error_rate: number;
  /** successful requests per second of wall time (first send to last answer) */
  achieved_rps: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  p999_ms: number;
  max_ms: number;
  mean_ms: number;
  /** most frequent error messages / status codes */
  top_errors: Record<string, number>;
  /** the load generator's own CPU use, % of one core */
  generator_cpu_percent: number;
  /** the target process's CPU % (of one core) and peak RSS, when a pid was given */
  server?: { cpu_percent: number; cpu_seconds: number; peak_rss_mib: number };
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[idx] as number;
}

/**
 * Parses `vegeta encode -to csv` output: timestamp (ns), code, latency (ns), bytes out,
 * bytes in, error, ... Only the first six columns are read; the error column may be quoted.
 */
function parseCsv(text: string): { ts: number; code: number; latencyNs: number; error: string }[] {
  const out: { ts: number; code: number; latencyNs: number; error: string }[] = [];
  let i = 0;
  const n = text.length;
  while (i < n) {
    const fields: string[] = [];
    // read 6 fields
    while (fields.length < 6 && i < n) {
      if (text[i] === '"') {
        let v = "";
        i++;
        for (;;) {
          const q = text.indexOf('"', i);
          if (q < 0) {
            v += text.slice(i);
            i = n;
            break;
          }
          v += text.slice(i, q);
          if (text[q + 1] === '"') {
            v += '"';
            i = q + 2;
          } else {
            i = q + 1;
            break;
          }
        }
        fields.push(v);
        if (text[i] === ",") i++;
      } else {
        let j = i;
        while (j < n && text[j] !== "," && text[j] !== "\n") j++;
        fields.push(text.slice(i, j));
        i = text[j] === "," ? j + 1 : j;
        if (text[j] === "\n") break;
      }
    }
    // skip to the end of the record (remaining columns are base64/plain, never quoted newlines)
    const nl = text.indexOf("\n", i);
    i = nl < 0 ? n : nl + 1;
    if (fields.length >= 3 && fields[0] !== "") {
      out.push({ ts: Number(fields[0]), code: Number(fields[1]), latencyNs: Number(fields[2]), error: fields[5] ?? "" });
    }
  }
  return out;
}

/** Options of {@link attack}. */
export interface AttackOptions {
  name: string;
  targetsFile: string;
  rate: number;
  seconds: number;
  /** per-request timeout, seconds */
  timeoutS?: number;
  /** processes whose CPU and peak RSS to report (first one is "server") */
  serverPid?: number;
  /** don't parse results (warm-up) */
  discard?: boolean;
}

/**
 * Most connections vegeta opens to the target (`-max-connections`; a request finding them all
 * busy waits for one, and that wait is part of its latency). Without a cap an overloaded step
 * grew to ~2,000 connections (one per worker, `-max-workers=2048`), more than the server's
 * listen backlog (Bun's is 512), and the steps after it got a fraction of their rate from an
 * idle server: bench/README.md "Connections". 256 is far above what any step here needs when the
 * server keeps up (rate x latency: 20,000/s at 5 ms is 100).
 */
export const MAX_CONNECTIONS = 256;

/** Runs one constant-rate attack pinned to the generator core and summarises it. */
export async function attack(vegeta: string, o: AttackOptions): Promise<AttackResult> {
  const out = join(ensureDir(TMP_DIR), `attack-${o.name}.bin`);
  rmSync(out, { force: true });
  const sampler = o.serverPid !== undefined ? new ProcSampler(o.serverPid) : undefined;
  const cmd = pinned("generator", [
    vegeta,
    "attack",
    "-format=json",
    `-targets=${o.targetsFile}`,
    `-rate=${Math.max(1, Math.round(o.rate))}/1s`,
    `-duration=${o.seconds}s`,
    `-timeout=${o.timeoutS ?? 10}s`,
    "-max-body=0",
    "-http2=false",
    "-workers=16",
    "-max-workers=2048",
    "-connections=2048",
    `-max-connections=${MAX_CONNECTIONS}`,
    `-output=${o.discard ? "/dev/null" : out}`,
  ]);
  const proc = Bun.spawn({ cmd, stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  const killer = setTimeout(() => proc.kill("SIGKILL"), (o.seconds + (o.timeoutS ?? 10) + 30) * 1000);
  const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(killer);
  const server = sampler?.stop();
  if (code !== 0) throw new Error(`vegeta attack exited ${code}: ${stderr.trim()}`);
  const ru = proc.resourceUsage();
  const genCpu = ru ? Number(ru.cpuTime.user + ru.cpuTime.system) / 1e6 : Number.NaN;
  const empty: AttackResult = {
    offered_rps: o.rate, seconds: o.seconds, requests: 0, errors: 0, error_rate: 0, achieved_rps: 0,
    p50_ms: 0, p90_ms: 0, p99_ms: 0, p999_ms: 0, max_ms: 0, mean_ms: 0, top_errors: {},
    generator_cpu_percent: round((genCpu / o.seconds) * 100, 1), ...(server ? { server } : {}),
  };
  if (o.discard) return empty;

  const csv = await run([vegeta, "encode", "-to=csv", out], { timeoutMs: 120_000 });
  rmSync(out, { force: true });
  const rows = parseCsv(csv);
  if (rows.length === 0) return empty;
  const lat = new Float64Array(rows.length);
  let errors = 0;
  let sum = 0;
  let first = Number.POSITIVE_INFINITY;
  let lastEnd = 0;
  let lastStart = 0;
  const top: Record<string, number> = {};
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i] as (typeof rows)[number];
    const ms = r.latencyNs / 1e6;
    lat[i] = ms;
    sum += ms;
    if (r.ts < first) first = r.ts;
    if (r.ts > lastStart) lastStart = r.ts;
    if (r.ts + r.latencyNs > lastEnd) lastEnd = r.ts + r.latencyNs;
    const ok = r.code >= 200 && r.code < 300 && r.error === "";
    if (!ok) {
      errors++;
      const k = (r.error || `status ${r.code}`).replace(/\d+\.\d+\.\d+\.\d+:\d+/g, "ADDR").slice(0, 120);
      top[k] = (top[k] ?? 0) + 1;
    }
  }
  lat.sort();
  const wall = (lastEnd - first) / 1e9;
  const topErrors = Object.fromEntries(
    Object.entries(top)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 5),
  );
  return {
    offered_rps: round(rows.length / Math.max(1e-9, (lastStart - first) / 1e9), 1),
    seconds: round(wall, 2),
    requests: rows.length,
    errors,
    error_rate: round(errors / rows.length, 5),
    achieved_rps: round((rows.length - errors) / wall, 1),
    p50_ms: round(percentile(lat, 0.5), 3),
    p90_ms: round(percentile(lat, 0.9), 3),
    p99_ms: round(percentile(lat, 0.99), 3),
    p999_ms: round(percentile(lat, 0.999), 3),
    max_ms: round(lat[lat.length - 1] as number, 3),
    mean_ms: round(sum / rows.length, 3),
    top_errors: topErrors,
    generator_cpu_percent: round((genCpu / o.seconds) * 100, 1),
    ...(server ? { server } : {}),
  };
}

/** One step of a saturation search. */
export interface SaturationStep {
  rate: number;
  pass: boolean;
  achieved_rps: number;
  p99_ms: number;
  error_rate: number;
  server_cpu_percent?: number;
  /** answers per second of server CPU (achieved / server CPU fraction): robust to other load */
  per_cpu_second?: number;
  generator_cpu_percent: number;
}

/**
 * Answers per server CPU-second: the median over the steps without errors where the server
 * used at least 5% of a core (below that the /proc tick resolution makes it meaningless).
 */
export function perCpuSecond(steps: readonly SaturationStep[]): number[] {
  return steps
    .filter((st) => (st.server_cpu_percent ?? 0) >= 5 && st.per_cpu_second !== undefined && st.error_rate < 0.01)
    .map((st) => st.per_cpu_second as number)
    .sort((a, b) => a - b);
}

/**
 * Ours / bare answers per server CPU-second at the same offered rates: for every rate both
 * searches ran without errors with the server above 5% of a core, ours' answers per CPU-second
 * over bare's at that rate; the median of those ratios, and the rates. Undefined when no rate
 * is in both. Per-request CPU falls as the rate grows (more requests per wake-up, per system
 * call), so the medians of two searches over different rates compare unlike things: a stack
 * that saturates early was judged against a bare server measured only at rates two or three
 * times higher (session 10: the Redis stack at 2,000-3,200/s against bare at 5,120-8,192/s).
 */
export function matchedCpuRatio(ours: readonly SaturationStep[], bare: readonly SaturationStep[]): { ratio: number; rates: number[] } | undefined {
  const valid = (st: SaturationStep) => (st.server_cpu_percent ?? 0) >= 5 && st.per_cpu_second !== undefined && st.error_rate < 0.01;
  const ratios: number[] = [];
  const rates: number[] = [];
  for (const o of ours.filter(valid)) {
    const b = bare.filter((x) => valid(x) && x.rate === o.rate);
    if (b.length === 0) continue;
    const bareCap = b.reduce((a, x) => a + (x.per_cpu_second as number), 0) / b.length;
    ratios.push((o.per_cpu_second as number) / bareCap);
    rates.push(o.rate);
  }
  if (ratios.length === 0) return undefined;
  ratios.sort((a, b) => a - b);
  const mid = ratios.length / 2;
  const ratio = ratios.length % 2 === 1 ? (ratios[Math.floor(mid)] as number) : ((ratios[mid - 1] as number) + (ratios[mid] as number)) / 2;
  return { ratio, rates: [...new Set(rates)].sort((a, b) => a - b) };
}

/** Result of {@link saturate}: the highest rate that passed. */
export interface SaturationResult {
  max_rps: number;
  /** the passing step at max_rps */
  at_max: SaturationStep | undefined;
  steps: SaturationStep[];
  /** true when the load generator's core was busy (>= 90%) at the first failing step */
  generator_bound: boolean;
  /**
   * Answers per second of server CPU, median over the error-free steps where the server used
   * >= 5% of a core: the throughput one fully available core would give. Less sensitive than max_rps to
   * other processes competing for the machine.
   */
  per_cpu_second: number | null;
  criteria: string;
}

/**
 * Finds the saturated throughput: the highest constant rate with < 1% errors, p99 <= p99Ms and
 * at least 95% of the offered rate answered. Grows the rate by x1.6 from `start` until a step
 * fails, then bisects `refine` times between the last pass and the first failure.
 */
export async function saturate(
  vegeta: string,
  o: { name: string; targetsFile: string; start: number; stepSeconds: number; p99Ms: number; serverPid?: number; refine?: number; maxRate?: number },
): Promise<SaturationResult> {
  const steps: SaturationStep[] = [];
  let pass: SaturationStep | undefined;
  let fail: SaturationStep | undefined;
  const once = async (rate: number) => {
    const r = await attack(vegeta, { name: `${o.name}-sat`, targetsFile: o.targetsFile, rate, seconds: o.stepSeconds, serverPid: o.serverPid, timeoutS: 5 });
    return { r, ok: r.error_rate < 0.01 && r.p99_ms <= o.p99Ms && r.achieved_rps >= 0.95 * rate };
  };
  const tryRate = async (rate: number): Promise<SaturationStep> => {
    let { r, ok } = await once(rate);
    if (!ok) {
      // one retry: on a shared machine a single stall elsewhere can fail a step
      await Bun.sleep(2000);
      ({ r, ok } = await once(rate));
    }
    const step: SaturationStep = {
      rate: Math.round(rate),
      pass: ok,
      achieved_rps: r.achieved_rps,
      p99_ms: r.p99_ms,
      error_rate: r.error_rate,
      ...(r.server ? { server_cpu_percent: r.server.cpu_percent } : {}),
      ...(r.server && r.server.cpu_percent > 0 ? { per_cpu_second: round(r.achieved_rps / (r.server.cpu_percent / 100), 0) } : {}),
      generator_cpu_percent: r.generator_cpu_percent,
    };
    steps.push(step);
    log(`  ${o.name} saturation: ${Math.round(rate)}/s -> ${ok ? "pass" : "FAIL"} (got ${r.achieved_rps}/s, p99 ${r.p99_ms} ms, errors ${(r.error_rate * 100).toFixed(2)}%, server cpu ${r.server?.cpu_percent ?? "?"}%, generator cpu ${r.generator_cpu_percent}%)`);
    // let queues drain and sockets close before the next step
    await Bun.sleep(ok ? 500 : 2000);
    return step;
  };
  let rate = o.start;
  const maxRate = o.maxRate ?? 1e6;
  for (;;) {
    const s = await tryRate(rate);
    if (s.pass) {
      pass = s;
      if (rate >= maxRate) break;
      rate = Math.min(maxRate, rate * 1.6);
    } else {
      fail = s;
      break;
    }
  }
  if (pass === undefined && fail !== undefined) {
    // even the first rate failed: halve until something passes (at most 4 times)
    for (let i = 0; i < 4 && pass === undefined; i++) {
      const s = await tryRate(fail.rate / 2);
      if (s.pass) pass = s;
      else fail = s;
    }
  }
  if (pass !== undefined && fail !== undefined) {
    for (let i = 0; i < (o.refine ?? 2); i++) {
      const mid = (pass.rate + fail.rate) / 2;
      if (fail.rate - pass.rate < pass.rate * 0.05) break;
      const s = await tryRate(mid);
      if (s.pass) pass = s;
      else fail = s;
    }
  }
  const caps = perCpuSecond(steps);
  return {
    max_rps: pass?.rate ?? 0,
    at_max: pass,
    steps,
    generator_bound: (fail?.generator_cpu_percent ?? 0) >= 90,
    per_cpu_second: caps.length > 0 ? (caps[Math.floor(caps.length / 2)] as number) : null,
    criteria: `errors < 1%, p99 <= ${o.p99Ms} ms, >= 95% of the offered rate answered; ${o.stepSeconds} s per step`,
  };
}
