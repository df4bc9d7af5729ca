/**
 * `bun run bench`: the whole benchmark suite, end to end, on a fresh clone with no manual steps.
 *
 *   1. installs vegeta (go install, pinned) and builds dist/feature-store (bun run build)
 *   2. micro-benchmarks (bench/micro.ts, mitata)
 *   3. load: embedded and PostgreSQL + Redis (bench/load.ts), with the bare Bun.serve and
 *      redis-benchmark baselines side by side
 *   4. cold start (bench/coldstart.ts)
 *   5. ingest through the Kafka worker (bench/ingest.ts), when the worker exists
 *   6. side by side with Feast's `feast serve` on the same Redis (bench/feast.ts; part `feast`,
 *      results in bench/results/feast.md and feast.json)
 *   7. multi-core scaling: online 1x10 saturated with `serve --workers 1` and `--workers N` (bench/scaling.ts)
 *   8. materialize: Parquet into each store beside the raw read rate (bench/materialize.ts;
 *      part `materialize`, results in bench/results/materialize.json and .md)
 *   9. training data: an entity dataframe of BENCH_TRAINING_ROWS (1,000,000) rows x
 *      BENCH_TRAINING_FEATURES (50) features answered as Parquet on each stack, beside DuckDB's
 *      ASOF JOIN on the same data, with the server's peak RSS (bench/training.ts; part `training`)
 *
 * Results: bench/results/latest.json and bench/results/latest.md. Parts: BENCH_ONLY / BENCH_SKIP
 * (micro, embedded, redis, saturation, coldstart, ingest, feast, scaling, materialize, training); durations: BENCH_SECONDS,
 * BENCH_STEP_SECONDS, ... (see bench/lib/common.ts and bench/README.md). With BENCH_ONLY, the
 * parts not run are kept from the previous bench/results/latest.json.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runColdStart } from "./coldstart.ts";
import { feastMarkdown, runAndWriteFeast } from "./feast.ts";
import { runIngest } from "./ingest.ts";
import { enabled, ensureDir, log, machineInfo, RESULTS_DIR, ROOT, settings, TMP_DIR } from "./lib/common.ts";
import { type AllResults, markdown, writeResults, type MicroResults } from "./lib/report.ts";
import { buildBinary } from "./lib/server.ts";
import { ensureVegeta } from "./lib/vegeta.ts";
import { mergeLoad, runLoad } from "./load.ts";
import { runScaling } from "./scaling.ts";
import { materializeMarkdown, runMaterialize, type MaterializeResults } from "./materialize.ts";
import type { TrainingResults } from "./training.ts";

const t0 = performance.now();
// With BENCH_ONLY, the parts not run now are kept from the previous latest.json.
let results: AllResults = {};
if (settings.only.size > 0 && existsSync(join(RESULTS_DIR, "latest.json"))) {
  const prev = JSON.parse(readFileSync(join(RESULTS_DIR, "latest.json"), "utf8")) as AllResults;
  results = { micro: prev.micro, load: prev.load, coldstart: prev.coldstart, ingest: prev.ingest, scaling: prev.scaling, materialize: prev.materialize, training: prev.training };
  if (settings.only.has("micro")) delete results.micro;
  // a run of some stack parts only (BENCH_ONLY=mixed) replaces those and keeps the rest
  if ((enabled("embedded") || enabled("redis")) && enabled("saturation") && enabled("steady") && enabled("mixed")) delete results.load;
  if (settings.only.has("coldstart")) delete results.coldstart;
  if (settings.only.has("ingest")) delete results.ingest;
  if (settings.only.has("scaling")) delete results.scaling;
  if (settings.only.has("materialize")) delete results.materialize;
  if (settings.only.has("training")) delete results.training;
  results.kept_from_previous = (["micro", "load", "coldstart", "ingest", "scaling", "materialize", "training"] as const).filter((k) => results[k] !== undefined);
}
log(`machine: ${JSON.stringify(machineInfo())}`);
ensureDir(TMP_DIR);

const needsLoad = enabled("embedded") || enabled("redis");
const vegeta = needsLoad ? await ensureVegeta() : undefined;
const bin = needsLoad || enabled("coldstart") || enabled("ingest") || enabled("feast") ? await buildBinary() : undefined;

const save = (): void => {
  results.duration_s = (performance.now() - t0) / 1000;
  writeResults(results);
};

if (enabled("micro")) {
  log("micro-benchmarks (bench/micro.ts)");
  const out = join(TMP_DIR, "micro.json");
  rmSync(out, { force: true });
  const proc = Bun.spawn({ cmd: [process.execPath, join(ROOT, "bench", "micro.ts")], env: { ...process.env, MICRO_JSON: out }, stdout: "inherit", stderr: "inherit" });
  if ((await proc.exited) === 0) results.micro = JSON.parse(readFileSync(out, "utf8")) as MicroResults;
  else log("micro-benchmarks failed (see above)");
  save();
}

if (needsLoad) {
  const load = await runLoad({ bin, vegeta });
  if (results.load) {
    // merged: the parts kept are listed in its `skipped`
    results.load = mergeLoad(results.load, load);
    results.kept_from_previous = results.kept_from_previous?.filter((k) => k !== "load");
  } else results.load = load;
  save();
}

if (enabled("coldstart")) {
  results.coldstart = await runColdStart({ bin });
  save();
}

if (enabled("ingest")) {
  results.ingest = await runIngest({ bin });
  save();
}

let materialized: MaterializeResults | undefined;
if (enabled("materialize")) {
  materialized = await runMaterialize({ bin });
  results.materialize = materialized;
  writeFileSync(join(RESULTS_DIR, "materialize.json"), `${JSON.stringify(materialized, null, 2)}\n`);
  writeFileSync(join(RESULTS_DIR, "materialize.md"), materializeMarkdown(materialized));
  save();
}

if (enabled("training")) {
  log("training data (bench/training.ts)");
  const out = join(TMP_DIR, "training.json");
  rmSync(out, { force: true });
  const trainingBin = bin ?? (await buildBinary());
  const args = ["--rows", String(process.env.BENCH_TRAINING_ROWS ?? 1_000_000), "--features", String(process.env.BENCH_TRAINING_FEATURES ?? 50), "--bin", trainingBin, "--json", out];
  const proc = Bun.spawn({ cmd: [process.execPath, join(ROOT, "bench", "training.ts"), ...args], stdout: "inherit", stderr: "inherit" });
  if ((await proc.exited) === 0 && existsSync(out)) results.training = JSON.parse(readFileSync(out, "utf8")) as TrainingResults;
  else log("training benchmark failed (see above)");
  save();
}

if (enabled("feast")) {
  try {
    process.stdout.write(feastMarkdown(await runAndWriteFeast({ bin, ...(vegeta ? { vegeta } : {}) })));
  } catch (e) {
    log(`feast side by side failed: ${(e as Error).stack ?? e}`);
  }
}

if (enabled("scaling")) {
  results.scaling = await runScaling({ bin: bin ?? (await buildBinary()), ...(vegeta ? { vegeta } : {}) });
  save();
}

save();
log(`done in ${Math.round((performance.now() - t0) / 1000)} s: bench/results/latest.md, bench/results/latest.json`);
process.stdout.write(markdown(results));
process.exit(0);
