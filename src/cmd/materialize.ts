import { closeSync, openSync, writeSync } from "node:fs";
import { MultiBar, type SingleBar } from "cli-progress";
import { AppError } from "../errors.ts";
import { parseTime } from "../lib/time.ts";
import { TENANT_RE } from "../serving/keys.ts";
import { InvalidRowError, materializeSource, type Progress, type Summary } from "../sources/materialize.ts";
import { HEARTBEAT_MS } from "../sources/jobs.ts";
import { SourceError } from "../sources/read.ts";
import { loadSource } from "../sources/register.ts";
import type { SourceSpec } from "../sources/spec.ts";
import { buildDeps, closeDeps, CliError, config, parseFlags, UsageError, type Command } from "./common.ts";

const DEFAULT_REJECTED = "rejected-rows.jsonl";
/** SQLite page cache of a materialize process, MiB (within the 512 MiB budget of a bulk load). */
const BULK_CACHE_MIB = 96;

export const command: Command = {
  summary: "load rows of registered sources (Parquet, CSV, PostgreSQL) into history and the online store",
  help: `Usage: feature-store materialize SOURCE... --tenant T [--start T] [--end T] [--incremental]
                                [--skip-invalid[=FILE]] [--json]

Loads the rows of each registered source (\`sources:\` in a \`register\` file) whose event time
is in [--start, --end) into history and the online store (the newest value per entity and
feature online), through the same path as POST /api/v1/features/write. Running the same window
again stores nothing new. A run that is stopped (Ctrl-C, kill -9, a source or database failure)
continues where it stopped when the same command is run again; every row is stored once.

Options:
  --tenant T            the tenant whose sources and features to use (required)
  --start T             first event time to load (RFC 3339, inclusive); default: no bound
  --end T               event times before this one (RFC 3339, exclusive); default: no bound
  --incremental         start at the source's watermark (the greatest event time already loaded)
  --skip-invalid[=FILE] store the valid rows and write rejected ones to FILE (JSON lines;
                        default ${DEFAULT_REJECTED}); without it the run stops at the first
                        invalid row, storing nothing from its chunk
  --json                print each source's summary as one JSON line on stdout
  --chunk-rows N        rows per chunk (default: about 50,000 values a chunk)

Progress goes to stderr: a bar per source on a terminal, plain lines otherwise.
Exit status: 0 when every source loaded; 1 when a run stopped (invalid row, source or database
failure; run the same command again to resume); 2 on a usage error or an unknown source.`,
  async run(argv) {
    const expanded = argv.flatMap((a) => (a.startsWith("--skip-invalid=") ? ["--skip-invalid", "--rejected", a.slice("--skip-invalid=".length)] : [a]));
    const { values, positionals } = parseFlags(
      expanded,
      {
        tenant: { type: "string" },
        start: { type: "string" },
        end: { type: "string" },
        incremental: { type: "boolean" },
        "skip-invalid": { type: "boolean" },
        rejected: { type: "string" },
        json: { type: "boolean" },
        "chunk-rows": { type: "string" },
        job: { type: "string" },
      },
      true,
    );
    if (positionals.length === 0) throw new UsageError("name at least one SOURCE");
    if (!values.tenant) throw new UsageError("--tenant is required");
    if (!TENANT_RE.test(values.tenant)) throw new UsageError("--tenant must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$");
    const time = (flag: "start" | "end"): number | null => {
      const v = values[flag];
      if (v === undefined) return null;
      const t = parseTime(v);
      if (t === null) throw new UsageError(`--${flag} must be an RFC 3339 timestamp, e.g. 2024-01-15T00:00:00Z`);
      return t;
    };
    const start = time("start");
    const end = time("end");
    if (start !== null && end !== null && end <= start) throw new UsageError("--end must be after --start");
    const chunkRows = values["chunk-rows"] === undefined ? undefined : Number(values["chunk-rows"]);
    if (chunkRows !== undefined && (!Number.isInteger(chunkRows) || chunkRows < 1 || chunkRows > 1_000_000)) throw new UsageError("--chunk-rows must be an integer from 1 to 1000000");
    const tenant = values.tenant;

    const deps = await buildDeps(config());
    // a bulk load touches index pages all over the file: a larger page cache saves re-reading them
    const offline = deps.stores.offline as { setCacheSize?: (mib: number) => void };
    offline.setCacheSize?.(BULK_CACHE_MIB);
    const abort = new AbortController();
    let why: "signal" | "parent" | undefined;
    const stop = () => {
      why ??= "signal";
      abort.abort();
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
    const job = values.job;
    // a job's process ends with the server that started it (the job is then `interrupted`)
    const parent = Number(process.env["FEATURE_STORE_PARENT_PID"] ?? 0);
    const watchParent = parent > 0 ? setInterval(() => {
      try {
        process.kill(parent, 0);
      } catch {
        why ??= "parent";
        abort.abort();
      }
    }, 1000) : undefined;
    // a job's row is touched regularly, so a job whose process died is seen as interrupted
    const heartbeat = job ? setInterval(() => void deps.stores.registry.sources.updateJob(job, {}, Date.now()).catch(() => {}), HEARTBEAT_MS) : undefined;
    let rejectFd: number | undefined;
    const bars = process.stderr.isTTY === true && !job ? new MultiBar({ format: "{source} [{bar}] {percentage}% | {rows} rows | {rate} rows/s | ETA {eta_formatted}", hideCursor: true, clearOnComplete: false, etaBuffer: 20 }) : undefined;
    try {
      const specs: SourceSpec[] = [];
      for (const name of positionals) {
        const spec = await loadSource(deps, tenant, name);
        if (!spec) throw new CliError(`unknown source ${JSON.stringify(name)} for tenant ${tenant} (declare it under \`sources:\` and run \`feature-store register\`)`, 2);
        specs.push(spec);
      }
      const rejectedPath = values.rejected ?? DEFAULT_REJECTED;
      const rejects = values["skip-invalid"]
        ? {
            write(line: string) {
              rejectFd ??= openSync(rejectedPath, "a");
              writeSync(rejectFd, `${line}\n`);
            },
          }
        : undefined;
      if (values.rejected !== undefined && !values["skip-invalid"]) throw new UsageError("--rejected needs --skip-invalid");

      for (const spec of specs) {
        const began = Date.now();
        let bar: SingleBar | undefined;
        let lastLine = 0;
        let lastJob = 0;
        const rate = (p: Progress) => Math.round(p.rows_read / Math.max(0.001, (Date.now() - began) / 1000));
        const onProgress = (p: Progress) => {
          if (bar) bar.update(p.total === undefined ? 0 : Math.min(p.done, p.total), { source: spec.name, rows: p.rows_read, rate: rate(p) });
          else if (!job && Date.now() - lastLine >= 2000) {
            lastLine = Date.now();
            const pct = p.total ? ` (${Math.min(100, (100 * p.done) / p.total).toFixed(1)}%)` : ""; // a table's total is an estimate
            console.error(`materialize ${spec.name}: ${p.rows_read} rows read${pct}, ${p.values_stored} values stored, ${rate(p)} rows/s`);
          }
          if (job && Date.now() - lastJob >= 1000) {
            lastJob = Date.now();
            void deps.stores.registry.sources.updateJob(job, { progress: { ...p, rows_per_second: rate(p) } }, Date.now()).catch(() => {});
          }
        };
        if (job) await deps.stores.registry.sources.updateJob(job, { status: "running" }, Date.now());
        let summary: Summary;
        try {
          summary = await materializeSource(deps, tenant, spec, {
            start, end, incremental: values.incremental === true, rejects, chunkRows, signal: abort.signal, onProgress,
            onStart: (i) => {
              // with no total known (a query), no percentage or ETA: rows and rate only
              if (bars) bar = bars.create(i.total ?? 0, 0, { source: spec.name, rows: 0, rate: 0 }, i.total === undefined ? { format: "{source} | {rows} rows | {rate} rows/s" } : undefined);
              else if (!job) console.error(`materialize ${spec.name}: ${i.resumed ? "resuming the interrupted run" : "starting"}${i.total !== undefined ? ` (${i.total} ${i.unit})` : ""}`);
            },
          });
        } catch (e) {
          bars?.stop();
          const msg = abort.signal.aborted ? `source ${spec.name}: interrupted; run the same command again to resume`
            : e instanceof InvalidRowError || e instanceof SourceError ? e.message
            : e instanceof AppError && e.code === "unavailable" ? `source ${spec.name}: the database is unavailable (${(e.cause as Error | undefined)?.message ?? e.message}); run the same command again to resume`
            : undefined;
          if (job) {
            const patch = why === "signal" ? { status: "cancelled" as const } : why === "parent" ? { status: "interrupted" as const } : { status: "failed" as const, error: msg ?? (e as Error).message };
            await deps.stores.registry.sources.updateJob(job, patch, Date.now()).catch(() => {});
          }
          if (msg) throw new CliError(msg, 1);
          throw e;
        }
        if (bar) bar.update(bar.getTotal(), { source: spec.name, rows: summary.rows_read, rate: Math.round(summary.rows_read / Math.max(0.001, summary.elapsed_ms / 1000)) });
        bars?.stop();
        if (job) await deps.stores.registry.sources.updateJob(job, { status: "succeeded", result: { ...summary } }, Date.now());
        printSummary(summary, rejects ? rejectedPath : undefined);
        if (values.json) console.log(JSON.stringify(summary));
      }
      return 0;
    } finally {
      bars?.stop();
      if (watchParent) clearInterval(watchParent);
      if (heartbeat) clearInterval(heartbeat);
      if (rejectFd !== undefined) closeSync(rejectFd);
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      await closeDeps(deps);
    }
  },
};

/** The end-of-run report (stderr, human-readable). */
function printSummary(s: Summary, rejectedPath: string | undefined): void {
  const secs = s.elapsed_ms / 1000;
  const lines = [
    `materialize ${s.source}: done in ${secs.toFixed(1)} s${s.resumed ? " (resumed an interrupted run)" : ""}`,
    `  window             ${s.window.start ?? "-inf"} .. ${s.window.end ?? "+inf"}`,
    `  rows read          ${s.rows_read} (${Math.round(s.rows_read / Math.max(secs, 0.001))} rows/s)${s.rows_outside_window ? `, ${s.rows_outside_window} outside the window` : ""}`,
    `  values stored      ${s.values_stored}`,
    `  identical re-sends ${s.identical_resends}`,
    ...(s.null_values ? [`  empty cells        ${s.null_values} (no value stored)`] : []),
    `  rows rejected      ${s.rows_rejected}${rejectedPath && s.rows_rejected ? ` (written to ${rejectedPath})` : ""}`,
    ...Object.entries(s.rejected_by_reason).map(([r, n]) => `    ${n} x ${r}`),
    ...(s.first_rejected.length ? [`  first rejected     ${s.first_rejected.map((r) => `${r.part}:${r.row}`).join(", ")}`] : []),
    `  watermark          ${s.watermark ?? "none"}`,
    ...(s.timings
      ? [
          `  time               reading ${(s.timings.read_ms / 1000).toFixed(1)} s, preparing ${(s.timings.prepare_ms / 1000).toFixed(1)} s, storing ${(s.timings.store_ms / 1000).toFixed(1)} s` +
            (s.timings.online_ms ? `, online store ${(s.timings.online_ms / 1000).toFixed(1)} s (beside the next chunk's storing)` : "") +
            (s.timings.checkpoint_ms ? `, copying the WAL ${(s.timings.checkpoint_ms / 1000).toFixed(1)} s (beside the store thread's writes)` : ""),
        ]
      : []),
  ];
  console.error(lines.join("\n"));
}
