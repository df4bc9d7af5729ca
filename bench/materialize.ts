/**
 * Materialize benchmark: values/s from one Parquet file into the embedded store and into
 * PostgreSQL + Redis (`feature-store materialize`, the compiled binary), beside the raw read
 * rate of the same file through the same reader with nothing stored (the physical limit of
 * the reader), with each run's peak RSS, CPU and where its time went (reading, preparing,
 * storing).
 *
 * The file: BENCH_MATERIALIZE_ROWS rows (default 500,000) of 4 feature columns (float64,
 * float32, int64, string) over 100,000 users, written by hyparquet-writer in row groups of
 * 100,000 (more than 1,000,000 rows: files of 1,000,000 rows, one source globbing them, so a
 * 10-million-row source is written without holding it in memory). Targets (issue 14):
 * >= 300,000 values/s embedded, >= 150,000 PostgreSQL + Redis. BENCH_MATERIALIZE_STACKS
 * (comma list of `embedded`, `postgres+redis`; default both) picks the stacks;
 * BENCH_MATERIALIZE_OUT (default `materialize`) names the scratch directory and the results
 * files, so two runs (e.g. a 10-million-row one) can go at once.
 *
 * `bun bench/materialize.ts` runs it alone (BENCH_BINARY=dist/feature-store skips the build);
 * `bun run bench` runs it as the `materialize` part. BENCH_BASELINE_BINARY=PATH (another build,
 * e.g. of main) runs each stack with that binary first, then with this one, for a same-run A/B.
 * On a shared machine the wall-clock rate follows the load; values per CPU-second of the
 * materialize process (`values_per_cpu_s`) moves less with it (PostgreSQL's and Redis's own
 * CPU is not in it).
 * Results: bench/results/materialize.json and .md. Numbers are as measured; the machine's
 * load average is reported with them.
 */
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parquetWriteFile } from "hyparquet-writer";
import { openReader } from "../src/sources/read.ts";
import type { SourceSpec } from "../src/sources/spec.ts";
import type { Summary } from "../src/sources/materialize.ts";
import { startPostgres, startRedis, type PgService, type RedisService } from "../test/harness/services.ts";
import { loadAverage, log, ProcSampler, RESULTS_DIR, round, TMP_DIR, track } from "./lib/common.ts";
import { buildBinary } from "./lib/server.ts";

const ROWS = Number(process.env.BENCH_MATERIALIZE_ROWS ?? 500_000);
/** Rows per Parquet file of the source. */
const FILE_ROWS = 1_000_000;
const OUT = process.env.BENCH_MATERIALIZE_OUT ?? "materialize";
const STACKS = (process.env.BENCH_MATERIALIZE_STACKS ?? "embedded,postgres+redis").split(",").map((x) => x.trim()) as ("embedded" | "postgres+redis")[];
const FEATURES = 4;
const TARGETS = { embedded: 300_000, "postgres+redis": 150_000 } as const;

/** One stack's run. */
export interface MaterializeRun {
  stack: "embedded" | "postgres+redis";
  /** "this" build, or "baseline" (BENCH_BASELINE_BINARY) */
  binary: "this" | "baseline";
  values_per_s: number;
  /** values stored per CPU-second of the materialize process */
  values_per_cpu_s: number;
  rows_per_s: number;
  values_stored: number;
  elapsed_s: number;
  peak_rss_mib: number;
  cpu_percent: number;
  timings: Summary["timings"];
  target: number;
  verdict: "met" | "missed";
}

export type MaterializeResults =
  | {
      ran: true;
      rows: number;
      values: number;
      file_mib: number;
      load_average: { start: number; end: number };
      read: { rows_per_s: number; values_per_s: number; elapsed_s: number };
      runs: MaterializeRun[];
      failures: string[];
    }
  | { ran: false; reason: string };

/** Writes rows [from, from + count) of the source to one file. */
export function writeFile(path: string, from = 0, count = ROWS): void {
  const ids = new Array<string>(count);
  const ts = new Array<Date>(count);
  const a = new Array<number>(count);
  const b = new Array<number>(count);
  const c = new Array<bigint>(count);
  const d = new Array<string>(count);
  const t0 = Date.UTC(2024, 0, 1);
  for (let k = 0; k < count; k++) {
    const i = from + k;
    ids[k] = `user_${i % 100_000}`;
    ts[k] = new Date(t0 + i * 1000);
    a[k] = i * 0.37;
    b[k] = (i % 1000) / 7;
    c[k] = BigInt(i * 13);
    d[k] = ["gold", "silver", "bronze", "none"][i % 4] as string;
  }
  parquetWriteFile({
    filename: path,
    rowGroupSize: 100_000,
    columnData: [
      { name: "user_id", data: ids, type: "STRING" },
      { name: "event_ts", data: ts, type: "TIMESTAMP" },
      { name: "spend_30d", data: a, type: "DOUBLE" },
      { name: "score", data: b, type: "FLOAT" },
      { name: "orders_total", data: c, type: "INT64" },
      { name: "tier", data: d, type: "STRING" },
    ],
  });
}

export const DEFS = (path: string) => `features:
  - {name: spend_30d, version: 1, dtype: float64, entity_type: user}
  - {name: score, version: 1, dtype: float32, entity_type: user}
  - {name: orders_total, version: 1, dtype: int64, entity_type: user}
  - {name: tier, version: 1, dtype: string, entity_type: user}
sources:
  - name: bench_users
    kind: parquet
    path: ${path}
    entity_column: user_id
    event_time_column: event_ts
    features: {spend_30d: spend_30d, score: score, orders_total: orders_total, tier: tier}
`;

/** The raw read rate: the same reader, the same columns and chunks, nothing stored. */
async function readRate(path: string): Promise<{ rows_per_s: number; values_per_s: number; elapsed_s: number }> {
  const spec = { kind: "parquet", path, name: "bench_users", entity_column: "user_id", event_time_column: "event_ts", features: {} } as SourceSpec;
  const t0 = performance.now();
  let rows = 0;
  for await (const chunk of openReader(spec).read(["user_id", "event_ts", "spend_30d", "score", "orders_total", "tier"], null, 12_500, { start: null, end: null })) rows += chunk.rows.length;
  const secs = (performance.now() - t0) / 1000;
  return { rows_per_s: Math.round(rows / secs), values_per_s: Math.round((rows * FEATURES) / secs), elapsed_s: round(secs, 2) };
}

async function runStack(bin: string, binary: MaterializeRun["binary"], stack: MaterializeRun["stack"], dir: string, env: Record<string, string>): Promise<MaterializeRun> {
  const base = { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", LOG_LEVEL: "warn", DATA_DIR: join(dir, "data"), ...env };
  const step = (args: string[]) => {
    const p = Bun.spawnSync([bin, ...args], { cwd: dir, env: base, stdout: "pipe", stderr: "pipe" });
    if (p.exitCode !== 0) throw new Error(`${args[0]} failed: ${p.stderr.toString().trim().split("\n").at(-1)}`);
  };
  if (stack !== "embedded") step(["migrate"]);
  step(["register", "defs.yaml", "--tenant", "bench"]);
  const proc = track(Bun.spawn([bin, "materialize", "bench_users", "--tenant", "bench", "--json"], { cwd: dir, env: base, stdout: "pipe", stderr: "pipe" }));
  const sampler = new ProcSampler(proc.pid);
  const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  const usage = sampler.stop();
  if ((await proc.exited) !== 0) throw new Error(`materialize failed: ${err.trim().split("\n").at(-1)}`);
  const s = JSON.parse(out.trim().split("\n").at(-1) as string) as Summary;
  const secs = s.elapsed_ms / 1000;
  const vps = Math.round(s.values_stored / secs);
  const cpuSecs = (usage.cpu_percent / 100) * secs;
  return {
    stack, binary, values_per_s: vps, values_per_cpu_s: Math.round(s.values_stored / Math.max(cpuSecs, 0.001)), rows_per_s: Math.round(s.rows_read / secs), values_stored: s.values_stored, elapsed_s: round(secs, 2),
    peak_rss_mib: usage.peak_rss_mib, cpu_percent: usage.cpu_percent, timings: s.timings, target: TARGETS[stack], verdict: vps >= TARGETS[stack] ? "met" : "missed",
  };
}

/** Runs the materialize benchmark. */
export async function runMaterialize(opts: { bin?: string } = {}): Promise<MaterializeResults> {
  let bin: string;
  try {
    bin = opts.bin ?? (await buildBinary());
  } catch (e) {
    return { ran: false, reason: `the binary did not build: ${(e as Error).message.split("\n")[0]}` };
  }
  const root = join(TMP_DIR, OUT);
  rmSync(root, { recursive: true, force: true });
  mkdirSync(root, { recursive: true });
  let file = join(root, "users.parquet");
  log(`materialize: writing ${ROWS.toLocaleString("en-US")} rows x ${FEATURES} features to ${file}`);
  let bytes = 0;
  if (ROWS <= FILE_ROWS) {
    writeFile(file);
    bytes = Bun.file(file).size;
  } else {
    for (let from = 0, n = 0; from < ROWS; from += FILE_ROWS, n++) {
      const part = join(root, `users-${String(n).padStart(3, "0")}.parquet`);
      writeFile(part, from, Math.min(FILE_ROWS, ROWS - from));
      bytes += Bun.file(part).size;
    }
    file = join(root, "users-*.parquet");
  }
  const fileMib = round(bytes / 2 ** 20, 1);
  const loadStart = loadAverage();
  const read = await readRate(file);
  log(`materialize: raw read ${read.values_per_s.toLocaleString("en-US")} values/s`);
  const runs: MaterializeRun[] = [];
  const failures: string[] = [];
  const baseline = process.env.BENCH_BASELINE_BINARY;
  const binaries: [MaterializeRun["binary"], string][] = baseline ? [["baseline", baseline], ["this", bin]] : [["this", bin]];
  for (const stack of STACKS) {
    for (const [binary, path] of binaries) {
      const dir = join(root, `${stack.replace("+", "-")}-${binary}`);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, "defs.yaml"), DEFS(file));
      let pg: PgService | undefined;
      let redis: RedisService | undefined;
      try {
        const env: Record<string, string> = {};
        if (stack === "postgres+redis") {
          pg = await startPostgres({ settings: { synchronous_commit: "on" } });
          redis = await startRedis();
          env["POSTGRES_URL"] = pg.url;
          env["REDIS_URL"] = redis.url;
        }
        const load = loadAverage();
        const r = await runStack(path, binary, stack, dir, env);
        log(`materialize: ${stack} (${binary} build) ${r.values_per_s.toLocaleString("en-US")} values/s, ${r.values_per_cpu_s.toLocaleString("en-US")} per CPU-s, peak RSS ${r.peak_rss_mib} MiB, load ${load}`);
        runs.push(r);
      } catch (e) {
        failures.push(`${stack} (${binary} build): ${(e as Error).message}`);
        log(`materialize: ${stack} (${binary} build) failed: ${(e as Error).message}`);
      } finally {
        await redis?.stop().catch(() => {});
        await pg?.stop().catch(() => {});
      }
    }
  }
  rmSync(root, { recursive: true, force: true });
  return { ran: true, rows: ROWS, values: ROWS * FEATURES, file_mib: fileMib, load_average: { start: loadStart, end: loadAverage() }, read, runs, failures };
}

/** The results as a Markdown section. */
export function materializeMarkdown(r: MaterializeResults): string {
  if (!r.ran) return `## Materialize (Parquet -> store)\n\nnot run: ${r.reason}\n`;
  const n = (x: number) => x.toLocaleString("en-US");
  const lines = [
    "## Materialize (Parquet -> store)",
    "",
    `${n(r.rows)} rows x 4 features (${n(r.values)} values, ${r.file_mib} MiB of Parquet); load average ${r.load_average.start} at start, ${r.load_average.end} at end.`,
    "",
    "| what | values/s | values per CPU-s | rows/s | target | verdict | peak RSS MiB | CPU % | reading s | preparing s | storing s | online s |",
    "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    `| raw read (hyparquet, nothing stored) | ${n(r.read.values_per_s)} | - | ${n(r.read.rows_per_s)} | - | - | - | - | ${r.read.elapsed_s} | - | - | - |`,
    ...r.runs.map(
      (x) =>
        `| ${x.stack}${x.binary === "baseline" ? " (baseline build)" : ""} | ${n(x.values_per_s)} | ${n(x.values_per_cpu_s ?? 0)} | ${n(x.rows_per_s)} | ${n(x.target)} | ${x.verdict === "met" ? "met" : "**missed**"} | ${x.peak_rss_mib} | ${x.cpu_percent} | ` +
        `${round((x.timings?.read_ms ?? 0) / 1000, 1)} | ${round((x.timings?.prepare_ms ?? 0) / 1000, 1)} | ${round((x.timings?.store_ms ?? 0) / 1000, 1)} | ${x.timings?.online_ms === undefined ? "-" : round(x.timings.online_ms / 1000, 1)} |`,
    ),
    ...r.failures.map((f) => `\nfailed: ${f}`),
    "",
  ];
  return lines.join("\n");
}

if (import.meta.main) {
  const r = await runMaterialize(); // BENCH_BINARY=dist/feature-store skips the build
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(join(RESULTS_DIR, `${OUT}.json`), `${JSON.stringify(r, null, 2)}\n`);
  writeFileSync(join(RESULTS_DIR, `${OUT}.md`), materializeMarkdown(r));
  process.stdout.write(materializeMarkdown(r));
  process.exit(0);
}
