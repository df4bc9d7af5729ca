/**
 * Writes the results: bench/results/latest.json (everything measured, raw) and
 * bench/results/latest.md (the tables, the ratios to the baselines, and every target with its
 * measured figure: met, missed or not run).
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { LoadResults, SteadyResult } from "../load.ts";
import { materializeMarkdown, type MaterializeResults } from "../materialize.ts";
import type { TrainingResults } from "../training.ts";
import type { MixedResult } from "../mixed.ts";
import type { ScalingResults } from "../scaling.ts";
import { ensureDir, machineInfo, RESULTS_DIR, round, settings } from "./common.ts";
import { matchedCpuRatio } from "./vegeta.ts";

/** Results of bench/coldstart.ts. */
export interface ColdStartResults {
  starts: number;
  median_ms: number;
  p90_ms: number;
  min_ms: number;
  max_ms: number;
  idle_rss_mib: number;
  bare: { median_ms: number; cpu_median_ms?: number; idle_rss_mib: number } | null;
  ratio_to_bare: number | null;
  /** CPU (every thread) from exec to the first 200, median, ms; and ours / bare */
  cpu_median_ms?: number;
  cpu_ratio_to_bare?: number | null;
  /** exec to the first 200 on /readyz (stores open, the HTTP app built), median, ms: the start of `serve` that the liveness probe does not wait for */
  ready_median_ms?: number;
  binary_mib: number;
}

/** Results of bench/ingest.ts. */
export type IngestResults =
  | { ran: false; reason: string }
  | {
      ran: true;
      events: number;
      features_per_event: number;
      saturated_events_per_s: number;
      saturated_values_per_s: number;
      freshness_rate_events_per_s: number;
      freshness_p50_ms: number;
      freshness_p99_ms: number;
      freshness_samples: number;
      worker_cpu_percent: number;
      worker_peak_rss_mib: number;
      notes: string[];
    };

/** Summary of bench/micro.ts: per group, per variant, ns per iteration. */
export type MicroResults = Record<string, { name: string; avg_ns: number; p50_ns: number; p99_ns: number }[]>;

export interface AllResults {
  scaling?: ScalingResults;
  micro?: MicroResults;
  load?: LoadResults;
  coldstart?: ColdStartResults;
  ingest?: IngestResults;
  /** bench/materialize.ts (issue 14): Parquet -> each store, beside the raw read rate */
  materialize?: MaterializeResults;
  /** bench/training.ts (issue 13): an entity dataframe through POST /features/batch as Parquet, beside DuckDB */
  training?: TrainingResults;
  duration_s?: number;
  /** parts kept from the previous latest.json (a BENCH_ONLY run) */
  kept_from_previous?: string[];
}

const f = (x: number | null | undefined, d = 2): string => (x === null || x === undefined || !Number.isFinite(x) ? "-" : String(round(x, d)));
const big = (x: number | null | undefined): string => (x === null || x === undefined || !Number.isFinite(x) ? "-" : Math.round(x).toLocaleString("en-US"));
const pct = (x: number | null | undefined): string => (x === null || x === undefined || !Number.isFinite(x) ? "-" : `${round(x * 100, 2)}%`);

type Verdict = "met" | "missed" | "not run";
interface Target {
  goal: string;
  measured: string;
  verdict: Verdict;
}

function target(goal: string, value: number | null | undefined, ok: (v: number) => boolean, show: (v: number) => string): Target {
  if (value === null || value === undefined || !Number.isFinite(value)) return { goal, measured: "not measured", verdict: "not run" };
  return { goal, measured: show(value), verdict: ok(value) ? "met" : "missed" };
}

/** Every target of the issue, with the measured figure. */
export function targets(r: AllResults): Target[] {
  const sat = (stack: string, sc: string) => r.load?.saturation.find((s) => s.stack === stack && s.scenario === sc);
  const st = (stack: string, sc: string) => r.load?.steady.find((s) => s.stack === stack && s.scenario === sc);
  const bareSat = sat("embedded", "online_1x10")?.bare?.max_rps;
  const redisSat = sat("postgres+redis", "online_1x10")?.ours.max_rps;
  const bareCpu = sat("embedded", "online_1x10")?.bare?.per_cpu_second;
  const redisCpu = sat("postgres+redis", "online_1x10")?.ours.per_cpu_second;
  // the Redis figure's own run's bare server, when the report merges runs (bench/load.ts mergeLoad)
  const redisBareSat = sat("postgres+redis", "online_1x10")?.bare?.max_rps ?? bareSat;
  const redisBareCpu = sat("postgres+redis", "online_1x10")?.bare?.per_cpu_second ?? bareCpu;
  // judged at the rates the Redis search and its bare search both ran (matchedCpuRatio), else on the two medians
  const redisBareSteps = (sat("postgres+redis", "online_1x10")?.bare ?? sat("embedded", "online_1x10")?.bare)?.steps;
  const redisOurs = sat("postgres+redis", "online_1x10")?.ours;
  const redisMatched = redisOurs && redisBareSteps ? matchedCpuRatio(redisOurs.steps, redisBareSteps) : undefined;
  const embedded1 = sat("embedded", "online_1x10");
  const atRates = (rates: number[] | undefined) => (rates && rates.length > 0 ? ` at the same offered rates (${rates.map((x) => big(x)).join(", ")}/s)` : ", no rate in both searches: their medians");
  const ing = r.ingest?.ran ? r.ingest : undefined;
  return [
    // Judged on answers per server CPU-second: the max rates of two searches run minutes apart on
    // a shared machine are not comparable (and the bare server's is capped by the load generator).
    // issue 12: at most 2x the server CPU of a bare Bun.serve per request (>= 50% per CPU-second)
    target("online 1x10 saturated >= 50% of bare Bun.serve (embedded; judged per server CPU-second)", sat("embedded", "online_1x10")?.cpu_ratio_to_bare ?? null, (v) => v >= 0.5, (v) => `${pct(v)} per CPU-second${atRates(embedded1?.cpu_ratio_rates)} (search medians ${big(embedded1?.ours.per_cpu_second)} vs ${big(bareCpu)}); max rate ${pct(sat("embedded", "online_1x10")?.ratio_to_bare)} (${big(sat("embedded", "online_1x10")?.ours.max_rps)} vs ${big(bareSat)} req/s${sat("embedded", "online_1x10")?.bare?.generator_bound ? ", bare generator-bound" : ""})`),
    target("online 1x10 saturated >= 40% of bare Bun.serve (Redis; judged per server CPU-second)", redisMatched?.ratio ?? (redisCpu && redisBareCpu ? redisCpu / redisBareCpu : null), (v) => v >= 0.4, (v) => `${pct(v)} per CPU-second${atRates(redisMatched?.rates)} (search medians ${big(redisCpu)} vs ${big(redisBareCpu)}); max rate ${pct(redisSat !== undefined && redisBareSat ? redisSat / redisBareSat : null)} (${big(redisSat)} vs ${big(redisBareSat)} req/s)`),
    target("online 1x10 p99 < 2 ms at 5,000 req/s (embedded)", st("embedded", "online_1x10")?.ours.p99_ms, (v) => v < 2, (v) => `${f(v, 3)} ms at ${big(st("embedded", "online_1x10")?.rate)}/s`),
    target("online 1x10 p99 < 2 ms at 5,000 req/s (Redis)", st("postgres+redis", "online_1x10")?.ours.p99_ms, (v) => v < 2, (v) => `${f(v, 3)} ms at ${big(st("postgres+redis", "online_1x10")?.rate)}/s`),
    target("online 100x10 >= 1,000,000 features/s (embedded)", sat("embedded", "online_100x10")?.ours.features_per_s, (v) => v >= 1e6, (v) => `${big(v)} features/s`),
    target("online 100x10 >= 1,000,000 features/s (Redis)", sat("postgres+redis", "online_100x10")?.ours.features_per_s, (v) => v >= 1e6, (v) => `${big(v)} features/s`),
    target("batch point-in-time on PostgreSQL >= 200,000 row x features/s", sat("postgres+redis", "batch_pit_1000x10")?.ours.features_per_s, (v) => v >= 2e5, (v) => `${big(v)} row x features/s`),
    target("ingest >= 100,000 feature values/s (Kafka -> PostgreSQL + Redis)", ing?.saturated_values_per_s, (v) => v >= 1e5, (v) => `${big(v)} values/s`),
    target("freshness p99 < 500 ms at half the saturated ingest rate", ing?.freshness_p99_ms, (v) => v < 500, (v) => `${f(v, 1)} ms`),
    // Judged in the "free" layout (every process on every core, as deployed); with BENCH_PIN the
    // "one core" stress layout (server, PostgreSQL and Redis sharing one core) is listed too.
    ...["embedded", "postgres+redis"].flatMap((stack) =>
      (["free", "one core"] as const).flatMap((layout) => {
        const m = r.load?.mixed?.find((x) => x.stack === stack && (x.layout ?? "free") === layout);
        if (m === undefined && layout === "one core") return [];
        const where = layout === "free" ? "" : ", server and stores pinned to one core (stress layout)";
        return [target(`online p99 with training queries and writes in the background <= 3x online p99 alone, 0 errors (${stack}${where})`, m ? m.ratio.p99 + (m.with_background.errors > 0 ? 1e9 : 0) : null, (v) => v <= 3, () => `${f(m?.ratio.p99)}x (${f(m?.with_background.p99_ms, 3)} vs ${f(m?.alone.p99_ms, 3)} ms at ${big(m?.rate)}/s), ${m?.with_background.errors} errors`)];
      }),
    ),
    ...(["embedded", "postgres+redis"] as const).map((stack) => {
      const m = r.materialize?.ran ? r.materialize : undefined;
      const run = m?.runs.find((x) => x.stack === stack && x.binary === "this");
      const goal = stack === "embedded" ? 300_000 : 150_000;
      return target(
        `materialize Parquet -> ${stack === "embedded" ? "embedded store" : "PostgreSQL + Redis"} >= ${big(goal)} values/s (beside the raw read rate of the same file)`,
        run?.values_per_s,
        (v) => v >= goal,
        (v) => `${big(v)} values/s (${big(run?.values_per_cpu_s)} per CPU-s; raw read ${big(m?.read.values_per_s)} values/s; ${big(m?.rows)} rows, peak RSS ${run?.peak_rss_mib} MiB)`,
      );
    }),
    ...(["embedded", "postgres"] as const).flatMap((stack) => {
      const t = r.training;
      const run = t?.runs.filter((x) => x.stack === stack).sort((a, b) => b.rate - a.rate)[0];
      const goal = stack === "embedded" ? 1_000_000 : 500_000;
      const duck = typeof t?.duckdb === "object" ? t.duckdb.rate : undefined;
      const size = t ? `${big(t.rows)} rows x ${t.features} features` : "";
      return [
        target(
          `training query ${stack === "embedded" ? "embedded" : "PostgreSQL"} >= ${big(goal)} row x features/s (${size || "1M rows x 50 features"}, Parquet out; DuckDB's ASOF JOIN beside it)`,
          run?.rate,
          (v) => v >= goal && (t?.rows ?? 0) >= 1_000_000,
          (v) => `${big(v)} row x features/s (DuckDB ${duck ? `${big(duck)}; ours ${pct(v / duck)}` : String(t?.duckdb)}); first byte ${run?.ttfb_s} s; ${size}`,
        ),
        target(`training query ${stack === "embedded" ? "embedded" : "PostgreSQL"}: server peak RSS < 1 GiB`, run?.peak_rss_mib, (v) => v < 1024 && (t?.rows ?? 0) >= 1_000_000, (v) => `${big(v)} MiB (${size})`),
      ];
    }),
    target(
      "cold start (exec -> first 200 on /healthz) <= 3x a bare compiled Bun.serve, median of >= 15 starts, same run",
      r.coldstart?.ratio_to_bare,
      (v) => v <= 3 && (r.coldstart?.starts ?? 0) >= 15,
      (v) => `${f(v)}x (${f(r.coldstart?.median_ms, 1)} vs ${f(r.coldstart?.bare?.median_ms, 1)} ms median of ${r.coldstart?.starts}; CPU to the first 200 ${f(r.coldstart?.cpu_median_ms, 1)} vs ${f(r.coldstart?.bare?.cpu_median_ms, 1)} ms, ${f(r.coldstart?.cpu_ratio_to_bare)}x)`,
    ),
  ];
}

function steadyTable(rows: SteadyResult[]): string[] {
  const out = [
    "| stack | scenario | rate/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | req/s | features/s | errors | cache hit | server CPU | peak RSS MiB | resp. bytes |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const s of rows) {
    const o = s.ours;
    out.push(
      `| ${s.stack} | ${s.scenario} | ${big(s.rate)} | ${f(o.p50_ms, 3)} | ${f(o.p90_ms, 3)} | ${f(o.p99_ms, 3)} | ${f(o.p999_ms, 3)} | ${f(o.max_ms, 2)} | ${big(o.achieved_rps)} | ${big(o.features_per_s)} | ${o.errors} | ${o.cache_hit_rate === null ? "-" : pct(o.cache_hit_rate)} | ${f(o.server?.cpu_percent, 0)}%${o.per_cpu_second !== undefined ? ` (${big(o.per_cpu_second)} req/CPU-s)` : ""}${o.stores_cpu_percent !== undefined ? ` (+postgres ${f(o.stores_cpu_percent, 0)}%)` : ""} | ${f(o.server?.peak_rss_mib, 0)} | ${big(s.response_bytes)} |`,
    );
    if (s.bare) {
      const b = s.bare;
      out.push(
        `| bare Bun.serve | same size, same rate | ${big(s.rate)} | ${f(b.p50_ms, 3)} | ${f(b.p90_ms, 3)} | ${f(b.p99_ms, 3)} | ${f(b.p999_ms, 3)} | ${f(b.max_ms, 2)} | ${big(b.achieved_rps)} | - | ${b.errors} | - | ${f(b.server?.cpu_percent, 0)}% | ${f(b.server?.peak_rss_mib, 0)} | ${big(s.response_bytes)} |`,
      );
      const r = s.ratio_to_bare;
      if (r) out.push(`| *ratio ours / bare* | | | *${f(r.p50)}x* | | *${f(r.p99)}x* | *${f(r.p999)}x* | *${f(r.max)}x* | | | | | *${f(r.server_cpu)}x* | | |`);
    }
  }
  return out;
}

/** The markdown table of mixed-workload results. */
export function mixedMarkdown(rows: MixedResult[]): string[] {
  const f = (x: number) => (Number.isFinite(x) ? String(round(x, 3)) : "-");
  const m0 = rows[0];
  const out = [
    `Online 1x10 at a fixed rate, alone and then with ${big(m0?.batch_rows)}-row x 10-feature training queries and ${big(m0?.write_records)}-record x 10-feature writes back to back in the background (same run, same server). Target: p99 with the background <= 3x p99 alone, 0 errors. Layouts: *free*, every process (server, stores, load generator) free on every core, as deployed (the judged one); *one core* (with BENCH_PIN), the server, PostgreSQL and Redis pinned to one core and the load generator to the other, a stress layout.`,
    "",
    "| stack | phase | rate/s | p50 ms | p99 ms | p99.9 ms | max ms | errors | background done |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
  ];
  for (const m of rows) {
    const b = m.background;
    const cpu = (c: { main_thread: number; process: number } | undefined) => (c ? `serving thread ${f(c.main_thread)}% of a core, process ${f(c.process)}%` : "");
    const stack = `${m.stack}${m.layout ? ` (${m.layout})` : ""}`;
    out.push(`| ${stack} | alone | ${m.rate} | ${f(m.alone.p50_ms)} | ${f(m.alone.p99_ms)} | ${f(m.alone.p999_ms)} | ${f(m.alone.max_ms)} | ${m.alone.errors} | ${cpu(m.cpu?.alone)} |`);
    out.push(
      `| ${stack} | with background | ${m.rate} | ${f(m.with_background.p50_ms)} | ${f(m.with_background.p99_ms)} | ${f(m.with_background.p999_ms)} | ${f(m.with_background.max_ms)} | ${m.with_background.errors} | ${b.batches} batches completed (${big(b.batch_rows_per_s)} rows/s, median ${f(b.batch_s_p50)} s), ${b.writes} writes (${big(b.write_values_per_s)} values/s, median ${f(b.write_s_p50)} s), ${b.shed_503} bulk 503s, ${b.failed} failed${Object.keys(m.shed_by_reason ?? {}).length > 0 ? `; online shed by reason: ${JSON.stringify(m.shed_by_reason)}` : ""}; ${cpu(m.cpu?.with_background)} |`,
    );
    out.push(`| ${stack} | *ratio* | | *${m.ratio.p50}x* | *${m.ratio.p99}x* | *${m.ratio.p999}x* | | | p99 target <= 3x, 0 errors: ${m.ratio.p99 <= 3 && m.with_background.errors === 0 ? "met" : "**missed**"} |`);
  }
  return out;
}

/** The markdown report. */
export function markdown(r: AllResults): string {
  const m = r.load?.machine ?? machineInfo();
  const lines: string[] = [
    "# feature-store benchmark results",
    "",
    `Generated by \`bun run bench\` (bench/run.ts) on ${new Date().toISOString()}${r.duration_s ? ` in ${Math.round(r.duration_s)} s` : ""}${r.kept_from_previous?.length ? ` (a BENCH_ONLY run; ${r.kept_from_previous.join(", ")} kept from the previous run)` : ""}.`,
    "",
    `Machine: ${m.nproc} cores (${m.cpu_model}), ${m.memory_gib} GiB, Linux ${m.kernel}, Bun ${m.bun}. Commit \`${m.commit}\`. Pinning: ${m.pinned}.`,
    r.load ? `Load average (1 min) at start / end of the load benchmark: ${r.load.load_average.start} / ${r.load.load_average.end}.` : "",
    "",
    `Settings: BENCH_SECONDS=${settings.seconds}, BENCH_STEP_SECONDS=${settings.stepSeconds}, BENCH_ENTITIES=${settings.entities}, BENCH_HISTORY_DAYS=${settings.historyDays}, BENCH_RATE_1X10=${settings.rate1x10}, BENCH_SAT_P99_MS=${settings.satP99Ms}.`,
    "",
    "## Targets",
    "",
    "| target | measured | verdict |",
    "| --- | --- | --- |",
    ...targets(r).map((t) => `| ${t.goal} | ${t.measured} | ${t.verdict === "met" ? "met" : t.verdict === "missed" ? "**missed**" : "not run"} |`),
    "",
  ];
  if (r.load) {
    const L = r.load;
    lines.push("## Load: saturated throughput", "", `A step passes with ${L.saturation[0]?.ours.criteria ?? "-"}.`, "");
    lines.push(
      "`per CPU-s` is answers per second of server CPU (achieved rate / server CPU share, median over the error-free steps with >= 5% CPU): the throughput of one fully available core, far less sensitive to other processes on the machine than the max rate.",
      "",
      "| stack | scenario | p99 bound ms | max req/s | features/s | per CPU-s | features per CPU-s | p99 ms at max | server CPU at max | bare max req/s | bare per CPU-s | ours / bare (max) | ours / bare (per CPU-s) |",
      "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    );
    for (const s of L.saturation) {
      const bound = /p99 <= (\d+(?:\.\d+)?) ms/.exec(s.ours.criteria)?.[1] ?? "-";
      lines.push(
        `| ${s.stack} | ${s.scenario} | ${bound} | ${big(s.ours.max_rps)} | ${big(s.ours.features_per_s)} | ${big(s.ours.per_cpu_second)} | ${big(s.ours.per_cpu_second === null ? null : s.ours.per_cpu_second * s.features_per_request)} | ${f(s.ours.at_max?.p99_ms, 3)} | ${f(s.ours.at_max?.server_cpu_percent, 0)}% | ${s.bare ? `${big(s.bare.max_rps)}${s.bare.generator_bound ? " (generator-bound)" : ""}` : "-"} | ${s.bare ? big(s.bare.per_cpu_second) : "-"} | ${s.ratio_to_bare !== undefined ? pct(s.ratio_to_bare) : "-"} | ${s.cpu_ratio_to_bare !== undefined ? pct(s.cpu_ratio_to_bare) : "-"} |`,
      );
    }
    const redisSat = L.saturation.find((s) => s.stack === "postgres+redis" && s.scenario === "online_1x10");
    const bareSat = L.saturation.find((s) => s.stack === "embedded" && s.scenario === "online_1x10")?.bare;
    if (redisSat && bareSat) lines.push("", `Redis online 1x10 vs the bare baseline: ${pct(redisSat.ours.max_rps / bareSat.max_rps)}.`);
    lines.push("", "## Load: constant arrival rate (open loop, vegeta)", "", "Latencies in ms; `req/s` is successful answers per second; CPU is % of one core; the bare baseline answers a body of the same size at the same rate.", "");
    lines.push(...steadyTable(L.steady));
    if (L.mixed && L.mixed.length > 0) lines.push("", "## Load: mixed workload (online lane vs bulk lane, bench/mixed.ts)", "", ...mixedMarkdown(L.mixed));
    const z = L.steady.find((s) => s.scenario.includes("zipf")) as (SteadyResult & { redis?: Record<string, number> }) | undefined;
    if (z?.redis) {
      lines.push(
        "",
        `Zipf mix: s=${z.redis.zipf_s} over ${big(z.redis.distinct_entities)} entities, Redis maxmemory ${z.redis.maxmemory_mib} MiB of a ${z.redis.full_data_set_mib} MiB data set (volatile-lru), ${big(z.redis.evicted_keys)} keys evicted; hit rate from /metrics feature_store_cache_requests_total: ${pct(z.ours.cache_hit_rate)}.`,
      );
    }
    if (L.redis_benchmark.length > 0) {
      lines.push("", "## redis-benchmark ceiling (closed loop, 50 clients; not a same-rate baseline)", "", "| command | pipeline | ops/s | p50 ms | p99 ms |", "| --- | ---: | ---: | ---: | ---: |");
      for (const b of L.redis_benchmark) lines.push(`| ${b.command} | ${b.pipeline} | ${big(b.rps)} | ${f(b.p50_ms, 3)} | ${f(b.p99_ms, 3)} |`);
      const rr = L.ratio_to_redis_benchmark;
      if (rr) lines.push("", `Ours as a share of the ceiling: online 1x10 req/s / HMGET/s = ${pct(rr.online_1x10_rps)}; online 100x10 entity lookups/s / pipelined HMGET/s = ${pct(rr.online_100x10_hmget_per_s)}.`);
    }
    lines.push("", "## Data loading over HTTP (`POST /features/write`, 1,000 records x 10 features per request, 4 in flight)", "", "| stack | values | seconds | values/s | 503s retried (load shedding) |", "| --- | ---: | ---: | ---: | ---: |");
    for (const [k, v] of Object.entries(L.loaded)) lines.push(`| ${k} | ${big(v.values)} | ${f(v.seconds, 1)} | ${big(v.values_per_s)} | ${big(v.retried_503 ?? 0)} |`);
    if (L.skipped.length > 0) lines.push("", `Skipped: ${L.skipped.join("; ")}.`);
  }
  if (r.ingest) {
    lines.push("", "## Ingest (Kafka worker -> PostgreSQL + Redis)", "");
    if (!r.ingest.ran) lines.push(`**Not run**: ${r.ingest.reason}`);
    else {
      const i = r.ingest;
      lines.push(
        "| events | features/event | saturated events/s | values/s | freshness rate events/s | freshness p50 ms | freshness p99 ms | worker CPU | worker peak RSS MiB |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        `| ${big(i.events)} | ${i.features_per_event} | ${big(i.saturated_events_per_s)} | ${big(i.saturated_values_per_s)} | ${big(i.freshness_rate_events_per_s)} | ${f(i.freshness_p50_ms, 1)} | ${f(i.freshness_p99_ms, 1)} | ${f(i.worker_cpu_percent, 0)}% | ${f(i.worker_peak_rss_mib, 0)} |`,
      );
      for (const n of i.notes) lines.push("", n);
    }
  }
  if (r.coldstart) {
    const c = r.coldstart;
    lines.push(
      "",
      "## Cold start (exec -> first 200 on /healthz, embedded, migrated data dir)",
      "",
      "| binary | starts | median ms | p90 ms | min ms | max ms | CPU to first 200, median ms | idle RSS MiB | size MiB |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
      `| dist/feature-store serve | ${c.starts} | ${f(c.median_ms, 1)} | ${f(c.p90_ms, 1)} | ${f(c.min_ms, 1)} | ${f(c.max_ms, 1)} | ${f(c.cpu_median_ms, 1)} | ${f(c.idle_rss_mib, 1)} | ${f(c.binary_mib, 0)} |`,
      c.bare ? `| bare Bun.serve, compiled | ${c.starts} | ${f(c.bare.median_ms, 1)} | - | - | - | ${f(c.bare.cpu_median_ms, 1)} | ${f(c.bare.idle_rss_mib, 1)} | - |` : "",
      c.ratio_to_bare !== null ? `\nOurs / bare median: ${f(c.ratio_to_bare)}x (CPU: ${f(c.cpu_ratio_to_bare)}x; CPU time is the figure other processes on a shared machine barely move).` : "",
    );
  }
  if (r.scaling) {
    const sc = r.scaling;
    lines.push(
      "",
      "## Multi-core scaling (online 1x10 saturated, embedded, `serve --workers N`)",
      "",
      `${sc.cores} cores; the load generator runs on the same machine${sc.pinned ? "; **the server was pinned to one core (BENCH_PIN), so its workers shared it**" : ""}.`,
      "",
      "| workers | max req/s | p99 ms at max |",
      "| ---: | ---: | ---: |",
      ...sc.runs.map((x) => `| ${x.workers} | ${big(x.max_rps)} | ${f(x.p99_ms_at_max, 3)} |`),
      "",
      `${sc.runs.at(-1)?.workers ?? "N"} workers / 1 worker: ${f(sc.ratio)}x.`,
    );
  }
  if (r.materialize) lines.push("", materializeMarkdown(r.materialize));
  if (r.training) {
    const t = r.training;
    lines.push(
      "",
      "## Training data (bench/training.ts)",
      "",
      `An entity dataframe of ${big(t.rows)} rows (CSV: user_id, timestamp, label) x ${t.features} float64 features over ${big(t.users)} users x ${t.days} days of history, answered as ${t.accept}; DuckDB's ASOF JOIN over the same history as one wide table: ${typeof t.duckdb === "object" ? `${big(t.duckdb.rate)} row x features/s (${f(t.duckdb.seconds)} s)` : t.duckdb}.`,
      "",
      "| stack | row x features/s | % of DuckDB | seconds | first byte s | MB out | server peak RSS MiB | load |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
      ...t.runs.map((x) => `| ${x.stack} | ${big(x.rate)} | ${typeof t.duckdb === "object" ? pct(x.rate / t.duckdb.rate) : "-"} | ${x.seconds} | ${x.ttfb_s} | ${big(x.bytes / 1e6)} | ${big(x.peak_rss_mib)} | ${x.load} |`),
      ...t.failures.map((x) => `\nfailed: ${x}`),
    );
  }
  if (r.micro) {
    lines.push("", "## Micro-benchmarks (mitata, in process; ns per operation)", "");
    for (const [group, rows] of Object.entries(r.micro)) {
      lines.push(`### ${group}`, "", "| variant | avg ns | p50 ns | p99 ns |", "| --- | ---: | ---: | ---: |");
      for (const b of rows) lines.push(`| ${b.name} | ${big(b.avg_ns)} | ${big(b.p50_ns)} | ${big(b.p99_ns)} |`);
      lines.push("");
    }
  }
  return `${lines.filter((l, i, a) => !(l === "" && a[i - 1] === "")).join("\n")}\n`;
}

/** Writes latest.json and latest.md; returns their paths. */
export function writeResults(r: AllResults): string[] {
  ensureDir(RESULTS_DIR);
  const json = join(RESULTS_DIR, "latest.json");
  const md = join(RESULTS_DIR, "latest.md");
  writeFileSync(json, `${JSON.stringify({ machine: machineInfo(), generated_at: new Date().toISOString(), targets: targets(r), ...r }, null, 2)}\n`);
  writeFileSync(md, markdown(r));
  return [json, md];
}

/**
 * `bun bench/lib/report.ts`: recomputes the derived figures of bench/results/latest.json (per
 * CPU-second capacities and ratios, targets) and rewrites latest.json and latest.md from it,
 * without measuring anything again.
 */
if (import.meta.main) {
  const { readFileSync } = await import("node:fs");
  const { perCpuSecond } = await import("./vegeta.ts");
  const { cpuRatios } = await import("../load.ts");
  const r = JSON.parse(readFileSync(join(RESULTS_DIR, "latest.json"), "utf8")) as AllResults;
  for (const s of r.load?.saturation ?? []) {
    for (const sr of [s.ours, s.bare]) {
      if (!sr) continue;
      const caps = perCpuSecond(sr.steps);
      sr.per_cpu_second = caps.length > 0 ? (caps[Math.floor(caps.length / 2)] as number) : null;
    }
    if (s.bare) {
      delete s.cpu_ratio_to_bare;
      delete s.cpu_ratio_rates;
      Object.assign(s, cpuRatios(s.ours, s.bare));
    }
  }
  writeResults(r);
  console.log(`rewrote ${join(RESULTS_DIR, "latest.md")}`);
}
