/**
 * PostgreSQL bulk write: `PostgresValues.writeValues` alone, the shape `materialize` gives it
 * (issue 14): BENCH_PG_ROWS rows (default 200,000) x 4 features over 100,000 entities, one
 * event time per row (a second apart), in chunks of 12,500 rows (50,000 values) each split into
 * two concurrent writes by entity, as materialize's two lanes do. Per run, on a fresh server
 * (the settings of bench/materialize.ts: fsync off, synchronous_commit on, default
 * shared_buffers; event times end a day ago): values/s, CPU seconds per million values of
 * PostgreSQL (all its processes, from /proc) and of this process, WAL bytes per value, the
 * tables' and indexes' sizes, the
 * statements' time (pg_stat_statements), then point-in-time reads over the loaded history
 * (`getAsOf`, BENCH_PG_ASOF_KEYS keys per call at random times, so most search history:
 * server CPU per key and wall time).
 *
 *   bun bench/pg-write.ts                      # this tree
 *   BENCH_SRC=/tmp/main-src bun bench/pg-write.ts  # a scratch copy of another tree (git archive main src migrations)
 *
 * BENCH_PG_PERF=FILE samples the backends of the first run's load with `perf record`
 * (BENCH_PG_PERF_ARGS, default `-F 999`; PostgreSQL exports its functions' names: `perf report
 * -i FILE --sort sym`). BENCH_PG_SETTINGS (JSON) adds server settings (replacing
 * shared_preload_libraries drops pg_stat_statements); BENCH_PG_LOG=FILE keeps the server log.
 * BENCH_PG_RUNS (default 3) runs, each on a fresh server; prints one block per run and the
 * medians. Nothing is written to bench/results.
 */
import { copyFileSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import pino from "pino";
import postgres from "postgres";
import type { PostgresDatabase as Db } from "../src/store/postgres/database.ts";
import type { AsOfKey, ValueWrite } from "../src/store/types.ts";
import { startPostgres } from "../test/harness/services.ts";
import { loadAverage, num, ROOT, round } from "./lib/common.ts";

const ROWS = num("BENCH_PG_ROWS", 200_000);
const RUNS = num("BENCH_PG_RUNS", 3);
const ASOF_KEYS = num("BENCH_PG_ASOF_KEYS", 1_000);
const ASOF_CALLS = num("BENCH_PG_ASOF_CALLS", 40);
const FEATURES = 4;
const CHUNK_ROWS = 12_500;
const LANES = 2;
const SRC = process.env.BENCH_SRC ?? ROOT;
/** BENCH_PG_PERF=FILE: `perf record` of the pool's backends during the first run's load */
const PERF = process.env.BENCH_PG_PERF;
/** BENCH_PG_SETTINGS: extra server settings as JSON; BENCH_PG_LOG=FILE keeps a copy of the server log */
const EXTRA = JSON.parse(process.env.BENCH_PG_SETTINGS ?? "{}") as Record<string, string>;
const KEEP_LOG = process.env.BENCH_PG_LOG;
const TICKS = 100; // USER_HZ

const { PostgresDatabase } = (await import(join(SRC, "src/store/postgres/database.ts"))) as { PostgresDatabase: typeof Db };

/**
 * History ends a day ago: the point-in-time reads take the path of recent partitions
 * (asOfChunk). BENCH_PG_OLD=1 starts it on 2024-01-01 instead (materialize's file), so they
 * take the path of training data reaching back past them (asOfHistory).
 */
const T0 = process.env.BENCH_PG_OLD ? Date.UTC(2024, 0, 1) : Date.now() - ROWS * 1000 - 86_400_000;

function makeRows(): ValueWrite[] {
  const rows: ValueWrite[] = [];
  for (let i = 0; i < ROWS; i++) {
    for (let f = 1; f <= FEATURES; f++) {
      const value = new Uint8Array(9);
      new DataView(value.buffer).setFloat64(1, i * 0.37 + f);
      value[0] = 0xcb;
      const value_hash = new Uint8Array(new Bun.CryptoHasher("md5").update(value).digest());
      rows.push({ feature_id: f, entity_id: `user_${i % 100_000}`, event_time: T0 + i * 1000, value, value_hash });
    }
  }
  return rows;
}

/** materialize's lane of an entity id */
function laneOf(id: string): number {
  let h = 0;
  for (let i = 0; i < id.length; i++) h = (h * 31 + id.charCodeAt(i)) | 0;
  return (h >>> 0) % LANES;
}

/** CPU seconds of the postmaster and every child of it. */
function pgCpu(postmaster: number): number {
  let total = 0;
  for (const p of readdirSync("/proc")) {
    const pid = Number(p);
    if (!(pid > 0)) continue;
    try {
      const s = readFileSync(`/proc/${pid}/stat`, "utf8");
      const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
      if (pid === postmaster || Number(f[1]) === postmaster) total += (Number(f[11]) + Number(f[12])) / TICKS;
    } catch {}
  }
  return total;
}

const selfCpu = (): number => {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1e6;
};

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

const rows = makeRows();
const log = pino({ level: "silent" });
const results: { rate: number; pg: number; self: number; wal: number; asofPg: number; asofMs: number }[] = [];
for (let r = 0; r < RUNS; r++) {
  const pg = await startPostgres({ settings: { synchronous_commit: "on", shared_preload_libraries: "pg_stat_statements", ...EXTRA } });
  const db = new PostgresDatabase({ url: pg.url, log, retentionDays: 0, timeoutMs: 60_000, poolSize: 4 });
  const admin = postgres(pg.url, { max: 1, onnotice: () => {} });
  try {
    await db.migrate();
    await admin`CREATE EXTENSION IF NOT EXISTS pg_stat_statements`;
    const postmaster = Number(readFileSync(join(pg.dir, "data", "postmaster.pid"), "utf8").split("\n")[0]);
    const load = loadAverage();
    const [lsn0] = await admin<{ lsn: string }[]>`SELECT pg_current_wal_lsn()::text AS lsn`;
    await admin`SELECT pg_stat_statements_reset()`;
    const pg0 = pgCpu(postmaster);
    const c0 = selfCpu();
    const t0 = performance.now();
    let stored = 0;
    let perf: ReturnType<typeof Bun.spawn> | undefined;
    for (let at = 0; at < rows.length; at += CHUNK_ROWS * FEATURES) {
      const parts: ValueWrite[][] = Array.from({ length: LANES }, () => []);
      for (const row of rows.slice(at, at + CHUNK_ROWS * FEATURES)) parts[laneOf(row.entity_id)]?.push(row);
      for (const outcomes of await Promise.all(parts.map((p) => db.writeValues(p)))) for (const o of outcomes) if (o.status === "stored") stored++;
      if (at === 0 && PERF && r === 0) {
        // the pool's backends are connected now: sample them (and only them) to the end of the load
        const pids = await admin<{ pid: number }[]>`SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`;
        perf = Bun.spawn(["perf", "record", ...(process.env.BENCH_PG_PERF_ARGS ?? "-F 999").split(" "), "-o", PERF, "-p", pids.map((p) => p.pid).join(",")], { stdout: "ignore", stderr: "ignore" });
        await Bun.sleep(300);
      }
    }
    if (perf) {
      perf.kill("SIGINT");
      await perf.exited;
    }
    const secs = (performance.now() - t0) / 1000;
    const self = selfCpu() - c0;
    const pgSecs = pgCpu(postmaster) - pg0;
    if (stored !== rows.length) throw new Error(`stored ${stored} of ${rows.length} values`);
    const [wal] = await admin<{ bytes: string }[]>`SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), ${lsn0?.lsn ?? "0/0"}::pg_lsn)::text AS bytes`;
    const stmts = await admin<{ query: string; calls: number; total: number }[]>`
      SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 100) AS query, calls::int, round(total_exec_time)::int AS total
      FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 6`;
    const sizes = await admin<{ name: string; mib: number }[]>`
      SELECT c.relname AS name, round(pg_relation_size(c.oid) / 1048576.0, 1)::float AS mib FROM pg_class c
      WHERE c.relname LIKE 'feature_values_%' OR c.relname LIKE 'online_values%' ORDER BY pg_relation_size(c.oid) DESC LIMIT 8`;
    await admin`VACUUM ANALYZE`;

    // point-in-time reads: random keys at random times within the loaded span
    let seed = 12345;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    const span = ROWS * 1000;
    const calls: AsOfKey[][] = [];
    for (let c = 0; c < ASOF_CALLS; c++) {
      calls.push(Array.from({ length: ASOF_KEYS }, () => ({ feature_id: 1 + Math.floor(rand() * FEATURES), entity_id: `user_${Math.floor(rand() * Math.min(ROWS, 100_000))}`, at: T0 + Math.floor(rand() * span) })));
    }
    await db.getAsOf(calls[0] as AsOfKey[]); // warm
    const a0 = pgCpu(postmaster);
    const at0 = performance.now();
    let found = 0;
    for (const keys of calls) for (const v of await db.getAsOf(keys)) if (v) found++;
    const asofMs = (performance.now() - at0) / ASOF_CALLS;
    const asofPg = ((pgCpu(postmaster) - a0) / (ASOF_CALLS * ASOF_KEYS)) * 1e6;

    const x = { rate: rows.length / secs, pg: (pgSecs / rows.length) * 1e6, self: (self / rows.length) * 1e6, wal: Number(wal?.bytes ?? 0) / rows.length, asofPg, asofMs };
    results.push(x);
    console.log(
      [
        `## run ${r + 1}: ${Math.round(x.rate).toLocaleString("en-US")} values/s (${rows.length} values, ${round(secs, 1)} s, load ${load} -> ${loadAverage()})`,
        `  PostgreSQL ${round(x.pg, 2)} CPU-s per M values, this process ${round(x.self, 2)}; WAL ${round(x.wal, 1)} bytes per value`,
        `  sizes MiB: ${sizes.map((s) => `${s.name} ${s.mib}`).join(", ")}`,
        ...stmts.map((s) => `  pg ${String(s.total).padStart(7)} ms ${String(s.calls).padStart(5)} calls  ${s.query}`),
        `  getAsOf: ${ASOF_CALLS} calls of ${ASOF_KEYS} keys: ${round(asofMs, 1)} ms per call, PostgreSQL ${round(asofPg, 2)} CPU-us per key, ${found} found`,
      ].join("\n"),
    );
  } finally {
    if (KEEP_LOG) copyFileSync(pg.logFile, KEEP_LOG);
    await admin.end().catch(() => {});
    await db.close().catch(() => {});
    await pg.stop().catch(() => {});
  }
}
console.log(
  `${SRC === ROOT ? "this tree" : SRC}: median of ${RUNS}: ${Math.round(median(results.map((x) => x.rate))).toLocaleString("en-US")} values/s; ` +
    `PostgreSQL ${round(median(results.map((x) => x.pg)), 2)} CPU-s per M values, this process ${round(median(results.map((x) => x.self)), 2)}; ` +
    `WAL ${round(median(results.map((x) => x.wal)), 1)} B per value; getAsOf ${round(median(results.map((x) => x.asofMs)), 1)} ms per ${ASOF_KEYS} keys, ${round(median(results.map((x) => x.asofPg)), 2)} CPU-us per key`,
);
process.exit(0);
