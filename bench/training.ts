/**
 * Training-data benchmark: an entity dataframe of ROWS rows (CSV body: user_id, timestamp,
 * label) x FEATURES float64 features through `POST /api/v1/features/batch` on the compiled
 * binary, answered as Parquet (streamed to nowhere), on the embedded stack and on PostgreSQL.
 * Reports row x features/s, time to first byte, and the server's peak RSS (VmHWM); beside it the
 * same point-in-time join by DuckDB's ASOF JOIN (PyPI duckdb in .cache/venv-bench) over the same
 * history as one wide Parquet table (DuckDB's best case: the physical-limit anchor).
 *
 *   bun bench/training.ts [--rows N] [--features F] [--users U] [--days D] [--stack embedded|postgres|both]
 *                         [--bin A,B] [--rounds R] [--accept parquet|arrow|csv|ndjson|json] [--json FILE]
 *
 * --json: also writes every run's figures (and DuckDB's) to FILE (the `training` part of
 * `bun run bench` reads it). DuckDB is installed into .cache/venv-bench from PyPI when missing.
 *
 * --bin: binaries to compare (default dist/feature-store); each stack's history is populated once
 * and every binary answers the same query R times (default 1), alternating (A B A B ...), so an
 * A/B shares the data and the machine's load. The load average is printed with every figure.
 *
 * History: U users x D daily values of every feature. Row timestamps are uniform over the
 * history span plus one day, ids uniform over U users (plus 1% never written).
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { createEncoder } from "../src/formats/encode.ts";
import { parseDtype } from "../src/registry/dtype.ts";
import { prng } from "../src/lib/prng.ts";
import { registerFeatures } from "../src/serving/register.ts";
import { prepareRows, storeRows } from "../src/serving/write.ts";
import { closeDeps } from "../src/cmd/common.ts";
import { openTestDeps } from "../test/support/backends.ts";
import { freePort, startPostgres, stopAll } from "../test/harness/services.ts";
import type { FrameColumn } from "../src/formats/frame.ts";

const ROOT = resolve(import.meta.dir, "..");
const { values: args } = parseArgs({
  options: {
    rows: { type: "string" },
    features: { type: "string" },
    users: { type: "string" },
    days: { type: "string" },
    stack: { type: "string" },
    bin: { type: "string" },
    rounds: { type: "string" },
    accept: { type: "string" },
    json: { type: "string" },
  },
});
const ROWS = Number(args.rows ?? 1_000_000);
const FEATURES = Number(args.features ?? 50);
const USERS = Number(args.users ?? 20_000);
const DAYS = Number(args.days ?? 3);
const STACKS = args.stack === "both" || args.stack === undefined ? ["embedded", "postgres"] : args.stack === "none" ? [] : [args.stack];
const BINS = (args.bin ?? join(ROOT, "dist/feature-store")).split(",").map((b) => resolve(b));
const ROUNDS = Number(args.rounds ?? 1);
const ACCEPTS: Record<string, string> = {
  parquet: "application/vnd.apache.parquet",
  arrow: "application/vnd.apache.arrow.stream",
  csv: "text/csv",
  ndjson: "application/x-ndjson",
  json: "application/json",
};
const ACCEPT = ACCEPTS[args.accept ?? "parquet"] ?? "application/vnd.apache.parquet";
const loadavg = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
const PY = join(ROOT, ".cache/venv-bench/bin/python");
const DUCKDB_VERSION = "1.4.4";

/** One run of one binary on one stack (the `--json` output). */
export interface TrainingRun {
  stack: string;
  bin: string;
  rate: number;
  seconds: number;
  ttfb_s: number;
  bytes: number;
  peak_rss_mib: number;
  sha256_12: string;
  load: string;
}
/** Everything `--json` writes. */
export interface TrainingResults {
  rows: number;
  features: number;
  users: number;
  days: number;
  accept: string;
  duckdb: { rate: number; seconds: number } | string;
  runs: TrainingRun[];
  failures: string[];
}
const out: TrainingResults = { rows: ROWS, features: FEATURES, users: USERS, days: DAYS, accept: ACCEPT, duckdb: "not run", runs: [], failures: [] };

/** PyPI duckdb in .cache/venv-bench (created when missing): the anchor's engine. */
function ensureDuckdb(): string | undefined {
  const ok = () => existsSync(PY) && Bun.spawnSync([PY, "-c", "import duckdb"], { stdout: "ignore", stderr: "ignore" }).exitCode === 0;
  if (ok()) return undefined;
  log(`installing duckdb==${DUCKDB_VERSION} from PyPI into .cache/venv-bench`);
  const venv = Bun.spawnSync(["python3", "-m", "venv", join(ROOT, ".cache/venv-bench")], { stdout: "inherit", stderr: "inherit" });
  if (venv.exitCode !== 0) return "python3 -m venv .cache/venv-bench failed";
  const pip = Bun.spawnSync([join(ROOT, ".cache/venv-bench/bin/pip"), "install", "--quiet", `duckdb==${DUCKDB_VERSION}`], { stdout: "inherit", stderr: "inherit" });
  return pip.exitCode === 0 && ok() ? undefined : `pip install duckdb==${DUCKDB_VERSION} failed`;
}
const T0 = Date.parse("2024-01-01T00:00:00Z");
const DAY = 86_400_000;
const names = Array.from({ length: FEATURES }, (_, i) => `f${i}`);

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

function log(msg: string): void {
  console.log(`[${new Date().toISOString().slice(11, 19)}] ${msg}`);
}

/** The history's value of feature f for user u on day d (deterministic). */
function value(u: number, d: number, f: number): number {
  return ((u * 31 + d * 7 + f) % 1000) / 10;
}

async function populate(env: Record<string, string>): Promise<void> {
  const deps = await openTestDeps(env);
  await registerFeatures(deps, "default", names.map((name) => ({ input: { name, version: 1, dtype: "float64", entity_type: "user" } })));
  await deps.registry.reload();
  const started = Date.now();
  for (let d = 0; d < DAYS; d++) {
    for (let start = 0; start < USERS; start += 500) {
      const records = Array.from({ length: Math.min(500, USERS - start) }, (_, i) => ({
        entity_id: `user_${start + i}`,
        event_time: new Date(T0 + d * DAY).toISOString(),
        features: Object.fromEntries(names.map((n, f) => [n, value(start + i, d, f)])),
      }));
      const { rows, defs } = prepareRows(deps, "default", "user", records, Date.now());
      await storeRows(deps, "default", "user", rows, defs);
    }
  }
  log(`history: ${USERS} users x ${DAYS} days x ${FEATURES} features = ${USERS * DAYS * FEATURES} values in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  await closeDeps(deps);
}

function entityCsv(): string {
  const rnd = prng(42);
  const lines = ["user_id,timestamp,label"];
  for (let i = 0; i < ROWS; i++) {
    const u = rnd() < 0.01 ? `never_${i}` : `user_${Math.floor(rnd() * USERS)}`;
    lines.push(`${u},${new Date(T0 + Math.floor(rnd() * (DAYS + 1) * DAY)).toISOString()},${i % 2}`);
  }
  return `${lines.join("\n")}\n`;
}

function peakRss(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : Number.NaN;
}

async function runServer(bin: string, env: Record<string, string>, csv: string): Promise<{ rate: number; seconds: number; ttfb: number; bytes: number; rss: number; sha: string; series: number[]; seriesStep: number }> {
  const port = await freePort();
  // BENCH_SERVER_CMD (e.g. "bun --cpu-prof src/cli.ts") runs the server from source, for profiles
  const cmd = process.env.BENCH_SERVER_CMD ? process.env.BENCH_SERVER_CMD.split(" ") : [bin];
  const server = Bun.spawn([...cmd, "serve", "--port", String(port), "--host", "127.0.0.1"], {
    // one process (SERVE_WORKERS=1): the peak RSS read is the pid that answers the query
    env: { PATH: process.env.PATH ?? "", ...env, LOG_LEVEL: "warn", SERVE_WORKERS: "1", BODY_LIMIT_BYTES: String(1024 * 1024 * 1024), ...(process.env.BENCH_STORE_TIMEOUT_MS ? { STORE_TIMEOUT_MS: process.env.BENCH_STORE_TIMEOUT_MS } : {}),
      // BENCH_SERVER_ENV="BULK_WORKERS=0 ..." (with BENCH_SERVER_CMD: a profile of the lane's work on the main thread)
      ...Object.fromEntries((process.env.BENCH_SERVER_ENV ?? "").split(" ").filter((kv) => kv.includes("=")).map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)])),
    },
    stdout: "inherit",
    stderr: "inherit",
  });
  try {
    const base = `http://127.0.0.1:${port}`;
    for (let i = 0; i < 300; i++) {
      try {
        if ((await fetch(`${base}/healthz`)).ok) break;
      } catch {
        // starting
      }
      await Bun.sleep(50);
    }
    const k = Bun.spawnSync([...cmd.filter((a) => !a.startsWith("--cpu-prof")), "keys", "create", "--tenant", "default", "--scopes", "read"], { env: { PATH: process.env.PATH ?? "", ...env } });
    const key = k.stdout.toString().trimEnd().split("\n").at(-1) as string;
    for (let i = 0; i < 300 && (await fetch(`${base}/api/v1/features`, { headers: { "x-api-key": key } })).status !== 200; i++) await Bun.sleep(100);
    const started = performance.now();
    // the server's RSS every second while it answers: flat, or growing with the answer?
    const rssSeries: number[] = [];
    const sampler = setInterval(() => {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${server.pid}/status`, "utf8"));
      if (m) rssSeries.push(Math.round(Number(m[1]) / 1024));
    }, 1000);
    const res = await fetch(`${base}/api/v1/features/batch?feature_names=${names.join(",")}`, {
      method: "POST",
      headers: { "x-api-key": key, "content-type": "text/csv", accept: ACCEPT },
      body: csv,
    });
    if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${(await res.text()).slice(0, 500)}`);
    let ttfb = 0;
    let bytes = 0;
    const hash = new Bun.CryptoHasher("sha256");
    for await (const chunk of res.body as ReadableStream<Uint8Array>) {
      if (bytes === 0) ttfb = (performance.now() - started) / 1000;
      bytes += chunk.byteLength;
      hash.update(chunk);
    }
    const seconds = (performance.now() - started) / 1000;
    clearInterval(sampler);
    const step = Math.max(1, Math.ceil(rssSeries.length / 10));
    const series = rssSeries.filter((_, i) => i % step === 0 || i === rssSeries.length - 1);
    return { rate: (ROWS * FEATURES) / seconds, seconds, ttfb, bytes, rss: peakRss(server.pid), sha: hash.digest("hex").slice(0, 12), series, seriesStep: step };
  } finally {
    server.kill(process.env.BENCH_SERVER_CMD ? "SIGTERM" : "SIGKILL");
    await server.exited;
  }
}

async function runStack(stack: string, csv: string, duck: { rate: number } | string): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "fs-bench-train-"));
  try {
    const env: Record<string, string> = stack === "embedded" ? { DATA_DIR: dir } : { POSTGRES_URL: await (await startPostgres()).createDatabase("training") };
    await populate(env);
    for (let round = 0; round < ROUNDS; round++) {
      for (const bin of BINS) {
        let r: Awaited<ReturnType<typeof runServer>>;
        try {
          r = await runServer(bin, env, csv);
        } catch (err) {
          log(`${stack} ${BINS.length > 1 ? `[${bin}] ` : ""}: failed: ${String(err).slice(0, 300)}; load ${loadavg()}`);
          out.failures.push(`${stack} [${bin}]: ${String(err).slice(0, 300)}`);
          continue;
        }
        out.runs.push({ stack, bin, rate: Math.round(r.rate), seconds: Number(r.seconds.toFixed(2)), ttfb_s: Number(r.ttfb.toFixed(2)), bytes: r.bytes, peak_rss_mib: Math.round(r.rss / 2 ** 20), sha256_12: r.sha, load: loadavg() });
        const ratio = typeof duck === "string" ? "" : `, ${((r.rate / duck.rate) * 100).toFixed(1)}% of DuckDB`;
        log(
          `${stack} ${BINS.length > 1 ? `[${bin}] ` : ""}: ${r.seconds.toFixed(1)} s = ${fmt(r.rate)} row x features/s${ratio}; first byte after ${r.ttfb.toFixed(2)} s; ${(r.bytes / 1e6).toFixed(0)} MB (sha256 ${r.sha}); server peak RSS ${(r.rss / 2 ** 20).toFixed(0)} MiB (RSS every ${r.seriesStep} s, MiB: ${r.series.join(" ")}); load ${loadavg()}`,
        );
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** DuckDB ASOF JOIN over the same data: history as one wide table, entity rows from the CSV. */
async function duckdb(csv: string): Promise<{ rate: number; seconds: number } | string> {
  const missing = ensureDuckdb();
  if (missing) return `not run: ${missing}`;
  const dir = mkdtempSync(join(tmpdir(), "fs-bench-duck-"));
  try {
    const columns: FrameColumn[] = [
      { name: "entity_id", type: parseDtype("string")! },
      { name: "event_time", type: parseDtype("timestamp")! },
      ...names.map((name) => ({ name, type: parseDtype("float64")! })),
    ];
    const enc = createEncoder("parquet", columns);
    const parts: Uint8Array[] = [enc.begin()];
    for (let d = 0; d < DAYS; d++) {
      for (let start = 0; start < USERS; start += 8192) {
        const n = Math.min(8192, USERS - start);
        const ids = Array.from({ length: n }, (_, i) => `user_${start + i}`);
        parts.push(enc.write({ rows: n, columns: [ids, new Array(n).fill(T0 + d * DAY), ...names.map((_, f) => ids.map((_, i) => value(start + i, d, f)))] }));
      }
    }
    parts.push(enc.end());
    writeFileSync(join(dir, "history.parquet"), Buffer.concat(parts));
    writeFileSync(join(dir, "entities.csv"), csv);
    const script = `
import duckdb, time
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
con.execute("CREATE TABLE h AS SELECT * FROM read_parquet('${dir}/history.parquet')")
con.execute("CREATE TABLE e AS SELECT user_id, timestamp::TIMESTAMPTZ AS ts, label FROM read_csv('${dir}/entities.csv', header=true, types={'user_id':'VARCHAR','timestamp':'VARCHAR','label':'BIGINT'})")
t = time.perf_counter()
con.execute("CREATE TABLE r AS SELECT e.*, h.* EXCLUDE (entity_id, event_time) FROM e ASOF LEFT JOIN h ON e.user_id = h.entity_id AND e.ts >= h.event_time")
print(time.perf_counter() - t)
`;
    const p = Bun.spawnSync([PY, "-c", script], { stdout: "pipe", stderr: "pipe" });
    if (p.exitCode !== 0) return `failed: ${p.stderr.toString().slice(-500)}`;
    const seconds = Number(p.stdout.toString().trim());
    if (!Number.isFinite(seconds)) return `failed: unexpected output ${JSON.stringify(p.stdout.toString().slice(-300))}`;
    return { rate: (ROWS * FEATURES) / seconds, seconds };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

try {
  for (const bin of BINS) if (!existsSync(bin)) throw new Error(`${bin} is missing: bun run build`);
  const csv = entityCsv();
  log(`entity dataframe: ${ROWS} rows (${(csv.length / 1e6).toFixed(0)} MB CSV) x ${FEATURES} features`);
  const duck = await duckdb(csv);
  out.duckdb = duck;
  log(typeof duck === "string" ? `DuckDB ASOF JOIN: ${duck}` : `DuckDB ASOF JOIN: ${duck.seconds.toFixed(2)} s = ${fmt(duck.rate)} row x features/s; load ${loadavg()}`);
  for (const stack of STACKS) await runStack(stack, csv, duck);
} finally {
  await stopAll();
  if (args.json) writeFileSync(args.json, `${JSON.stringify(out, null, 2)}\n`);
}
