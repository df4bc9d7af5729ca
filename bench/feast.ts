/**
 * Side by side with Feast's Python feature server: `feast serve` (feast[redis] from PyPI, pinned
 * in bench/feast/requirements.txt, Redis online store, 2 workers, worker recycling off: its
 * best configuration) and feature-store (embedded SQLite + the same Redis as online cache), on
 * the same data (BENCH_ENTITIES users x the 10 features of bench/lib/dataset.ts, copied from
 * ours into Feast's Redis with Feast's own write_to_online_store), both through Feast's endpoint
 * shape (`POST /get-online-features`; ours under /api/v1/feast with an API key). Online 1 x 10
 * and 100 x 10: saturated throughput (same criteria for both: < 1% errors, p99 <=
 * BENCH_FEAST_P99_MS, >= 95% of the offered rate answered), then p99 of both at one fixed rate
 * (half of Feast's saturated rate). Writes bench/results/feast.md and feast.json.
 *
 * `bun bench/feast.ts` runs it alone; `bun run bench` runs it as the part `feast`.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, startRedis } from "../test/harness/services.ts";
import { ensureDir, log, machineInfo, RESULTS_DIR, ROOT, round, run, settings, TMP_DIR } from "./lib/common.ts";
import { FEATURE_NAMES, prng } from "./lib/dataset.ts";
import { buildBinary, loadData, processFamily, startServer, waitHttp } from "./lib/server.ts";
import { attack, ensureVegeta, saturate, writeTargets, type AttackResult, type SaturationResult, type Target } from "./lib/vegeta.ts";

const VENV = join(ROOT, ".cache", "feast-bench-venv");
const num = (name: string, fallback: number): number => {
  const v = Number(process.env[name] ?? fallback);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${name} must be a positive number`);
  return v;
};
const P99_MS = num("BENCH_FEAST_P99_MS", 100);
const WORKERS = num("BENCH_FEAST_WORKERS", 2);

/** One scenario's figures, ours and Feast's. */
export interface FeastScenario {
  scenario: string;
  ours: { saturated_rps: number; features_per_s: number; p99_ms_at_fixed: number };
  feast: { saturated_rps: number; features_per_s: number; p99_ms_at_fixed: number };
  fixed_rate: number;
  throughput_ratio: number;
}

export interface FeastBenchResults {
  machine: Record<string, string | number>;
  feast_version: string;
  feast_workers: number;
  entities: number;
  p99_bound_ms: number;
  same_answers: boolean;
  mismatches: string[];
  known_differences: string[];
  scenarios: FeastScenario[];
  raw: Record<string, SaturationResult | AttackResult>;
}

/** The venv with feast[redis], installed when missing or another version. */
async function ensureFeast(): Promise<{ python: string; feast: string; version: string }> {
  const req = join(ROOT, "bench/feast/requirements.txt");
  const want = /==(\S+)/.exec(readFileSync(req, "utf8"))?.[1] ?? "";
  const python = join(VENV, "bin/python");
  const have = existsSync(python) ? (await run([python, "-c", "import importlib.metadata as m; print(m.version('feast')); import redis"]).catch(() => "")).trim() : "";
  if (have !== want) {
    log(`installing feast[redis]==${want} (PyPI) into ${VENV}`);
    if (!existsSync(python)) await run(["python3", "-m", "venv", VENV], { timeoutMs: 120_000 });
    await run([join(VENV, "bin/pip"), "install", "-q", "-r", req], { timeoutMs: 900_000 });
  }
  return { python, feast: join(VENV, "bin/feast"), version: want };
}

/** Targets of one scenario: `n` entities per request, Feast's body, against `url`. */
function targets(name: string, url: string, n: number, headers: Record<string, string>, entities: number): string {
  const rnd = prng(n * 31 + 7);
  const out: Target[] = [];
  const features = FEATURE_NAMES.map((f) => `user_stats:${f}`);
  for (let i = 0; i < 2000; i++) {
    const ids = Array.from({ length: n }, () => `user_${Math.floor(rnd() * entities)}`);
    out.push({ method: "POST", url, body: JSON.stringify({ entities: { user_id: ids }, features }), headers: { "content-type": "application/json", ...headers } });
  }
  return writeTargets(name, out);
}

/** Differences between Feast's answers and ours that are Feast's documented behaviour, not ours. */
const knownDifferences = new Set<string>();

/** Feast's and our answers for a few users: the same values (timestamps compared as instants). */
async function compareAnswers(ours: { url: string; key: string }, feastUrl: string): Promise<string[]> {
  const body = JSON.stringify({ entities: { user_id: ["user_1", "user_2", "user_999999999"] }, features: FEATURE_NAMES.map((f) => `user_stats:${f}`) });
  type Answer = { metadata: { feature_names: string[] }; results: { values: unknown[]; statuses: string[] }[] };
  const get = async (url: string, headers: Record<string, string>) => (await (await fetch(url, { method: "POST", body, headers: { "content-type": "application/json", ...headers } })).json()) as Answer;
  const a = await get(`${ours.url}/api/v1/feast/get-online-features`, { "x-api-key": ours.key });
  const b = await get(`${feastUrl}/get-online-features`, {});
  const out: string[] = [];
  const close = (x: unknown, y: unknown): boolean => {
    if (typeof x === "number" && typeof y === "number") return Math.abs(x - y) <= 1e-6 * Math.max(1, Math.abs(x));
    if (Array.isArray(x) && Array.isArray(y)) return x.length === y.length && x.every((v, i) => close(v, y[i]));
    if (typeof x === "string" && typeof y === "number") return Math.floor(Date.parse(x) / 1000) === y; // timestamp: RFC 3339 vs Feast's epoch seconds
    return JSON.stringify(x) === JSON.stringify(y);
  };
  a.metadata.feature_names.forEach((name, i) => {
    const j = b.metadata.feature_names.indexOf(name);
    if (j < 0) return void out.push(`${name}: not in Feast's answer`);
    const va = a.results[i]?.values ?? [];
    const vb = b.results[j]?.values ?? [];
    if (!va.every((v, k) => close(v, vb[k]))) out.push(`${name}: ours ${JSON.stringify(va)} vs Feast ${JSON.stringify(vb)}`);
    a.results[i]?.statuses.forEach((st, k) => {
      const theirs = b.results[j]?.statuses[k];
      // Feast's Redis store answers an entity never written with empty values marked PRESENT
      // (feast/infra/online_stores/redis.py, _get_features_for_entity): a known difference
      if (st === "NOT_FOUND" && theirs === "PRESENT" && vb[k] === null) knownDifferences.add("Feast's Redis online store marks an entity never written PRESENT (value null); ours answers NOT_FOUND");
      else if (st !== theirs) out.push(`${name}[${k}]: status ${st} vs ${theirs}`);
    });
  });
  return out;
}

export async function runFeastBench(opts: { bin?: string; vegeta?: string } = {}): Promise<FeastBenchResults> {
  const vegeta = opts.vegeta ?? (await ensureVegeta());
  const bin = opts.bin ?? (await buildBinary());
  const feastEnv = await ensureFeast();
  const redis = await startRedis();
  const dir = mkdtempSync(join(tmpdir(), "fs-bench-feast-"));
  const raw: FeastBenchResults["raw"] = {};
  let feastPid: number | undefined;
  const server = await startServer(bin, { DATA_DIR: join(dir, "data"), REDIS_URL: redis.url }, "feast-side");
  try {
    const view = { name: "user_stats", version: 1, entity_type: "user", join_keys: ["user_id"], features: FEATURE_NAMES };
    const reg = await fetch(`${server.url}/api/v1/feature-views/register`, { method: "POST", body: JSON.stringify(view), headers: { "content-type": "application/json", "x-api-key": server.key } });
    if (reg.status !== 201) throw new Error(`registering the view: ${reg.status} ${await reg.text()}`);
    log(`feast side by side: loading ${settings.entities} users into feature-store`);
    await loadData(server, settings.entities, 1, Date.now());

    const repo = join(dir, "repo");
    mkdirSync(repo);
    writeFileSync(join(repo, "definitions.py"), readFileSync(join(ROOT, "bench/feast/definitions.py")));
    writeFileSync(
      join(repo, "feature_store.yaml"),
      `project: bench\nregistry: ${join(dir, "registry.db")}\nprovider: local\nonline_store:\n  type: redis\n  connection_string: "127.0.0.1:${redis.port},db=1"\nentity_key_serialization_version: 3\n`,
    );
    const env = { ...process.env, FEAST_USAGE: "False" };
    await run([feastEnv.feast, "apply"], { cwd: repo, env, timeoutMs: 300_000 });
    log("feast side by side: copying the values into Feast's Redis online store (write_to_online_store)");
    await run([feastEnv.python, join(ROOT, "bench/feast/load_feast.py"), repo, server.url, server.key, String(settings.entities)], { cwd: repo, env, timeoutMs: 900_000 });

    const port = await freePort();
    const feastUrl = `http://127.0.0.1:${port}`;
    // Feast at its best: 2 workers, worker recycling off, no access log
    const feast = Bun.spawn([feastEnv.feast, "serve", "--host", "127.0.0.1", "--port", String(port), "--workers", String(WORKERS), "--max-requests", "0", "--no-access-log"], {
      cwd: repo,
      env,
      stdout: Bun.file(join(ensureDir(TMP_DIR), "feast-serve.log")),
      stderr: "inherit",
    });
    feastPid = feast.pid;
    await waitHttp(`${feastUrl}/health`, 120_000, () => feast.exitCode === null);
    const mismatches = await compareAnswers(server, feastUrl);
    if (mismatches.length > 0) log(`feast side by side: answers differ: ${mismatches.join("; ")}`);

    const scenarios: FeastScenario[] = [];
    for (const [scenario, n, oursStart, feastStart] of [
      ["online_1x10", 1, 2000, 100],
      ["online_100x10", 100, 50, 5],
    ] as const) {
      const oursFile = targets(`feast-ours-${scenario}`, `${server.url}/api/v1/feast/get-online-features`, n, { "x-api-key": server.key }, settings.entities);
      const feastFile = targets(`feast-feast-${scenario}`, `${feastUrl}/get-online-features`, n, {}, settings.entities);
      log(`feast side by side ${scenario}: saturation, feast serve`);
      const f = await saturate(vegeta, { name: `feast-${scenario}`, targetsFile: feastFile, start: feastStart, stepSeconds: settings.stepSeconds, p99Ms: P99_MS });
      log(`feast side by side ${scenario}: saturation, feature-store`);
      const o = await saturate(vegeta, { name: `ours-${scenario}`, targetsFile: oursFile, start: oursStart, stepSeconds: settings.stepSeconds, p99Ms: P99_MS, serverPid: server.pid });
      const fixed = Math.max(1, Math.floor(f.max_rps / 2));
      const fAt = await attack(vegeta, { name: `feast-${scenario}-fixed`, targetsFile: feastFile, rate: fixed, seconds: settings.seconds, timeoutS: 10 });
      const oAt = await attack(vegeta, { name: `ours-${scenario}-fixed`, targetsFile: oursFile, rate: fixed, seconds: settings.seconds, timeoutS: 10, serverPid: server.pid });
      Object.assign(raw, { [`feast_${scenario}_saturation`]: f, [`ours_${scenario}_saturation`]: o, [`feast_${scenario}_fixed`]: fAt, [`ours_${scenario}_fixed`]: oAt });
      scenarios.push({
        scenario,
        ours: { saturated_rps: o.max_rps, features_per_s: o.max_rps * n * 10, p99_ms_at_fixed: oAt.p99_ms },
        feast: { saturated_rps: f.max_rps, features_per_s: f.max_rps * n * 10, p99_ms_at_fixed: fAt.p99_ms },
        fixed_rate: fixed,
        throughput_ratio: f.max_rps > 0 ? round(o.max_rps / f.max_rps, 1) : 0,
      });
      log(`feast side by side ${scenario}: ours ${o.max_rps}/s vs Feast ${f.max_rps}/s (x${scenarios.at(-1)?.throughput_ratio}); p99 at ${fixed}/s ${oAt.p99_ms} vs ${fAt.p99_ms} ms`);
    }
    return {
      machine: machineInfo(),
      feast_version: feastEnv.version,
      feast_workers: WORKERS,
      entities: settings.entities,
      p99_bound_ms: P99_MS,
      same_answers: mismatches.length === 0,
      mismatches,
      known_differences: [...knownDifferences],
      scenarios,
      raw,
    };
  } finally {
    if (feastPid !== undefined) for (const p of processFamily(feastPid).reverse()) try {
      process.kill(p, "SIGKILL");
    } catch {
      /* gone */
    }
    await server.stop();
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The markdown table of the side-by-side run. */
export function feastMarkdown(r: FeastBenchResults): string {
  const rows = r.scenarios.map(
    (s) =>
      `| ${s.scenario} | ${s.ours.saturated_rps.toLocaleString("en-US")} | ${s.feast.saturated_rps.toLocaleString("en-US")} | x${s.throughput_ratio} | ${s.fixed_rate.toLocaleString("en-US")} | ${s.ours.p99_ms_at_fixed} | ${s.feast.p99_ms_at_fixed} |`,
  );
  return [
    `## Side by side with Feast (feast ${r.feast_version}, \`feast serve\` with ${r.feast_workers} workers, recycling off; same Redis; ${r.entities.toLocaleString("en-US")} users x 10 features)`,
    "",
    `Both through Feast's \`POST /get-online-features\` shape. Saturated: highest constant rate with < 1% errors, p99 <= ${r.p99_bound_ms} ms and >= 95% answered. Same answers: ${r.same_answers ? "yes" : `no (${r.mismatches.join("; ")})`}${r.known_differences.length > 0 ? `, except: ${r.known_differences.join("; ")}` : ""}.`,
    "",
    "| scenario | ours req/s | Feast req/s | ratio | fixed rate req/s | ours p99 ms | Feast p99 ms |",
    "| --- | --- | --- | --- | --- | --- | --- |",
    ...rows,
    "",
  ].join("\n");
}

/** Runs the side-by-side bench and writes bench/results/feast.{json,md}. */
export async function runAndWriteFeast(opts: { bin?: string; vegeta?: string } = {}): Promise<FeastBenchResults> {
  const r = await runFeastBench(opts);
  ensureDir(RESULTS_DIR);
  writeFileSync(join(RESULTS_DIR, "feast.json"), `${JSON.stringify(r, null, 2)}\n`);
  writeFileSync(join(RESULTS_DIR, "feast.md"), feastMarkdown(r));
  return r;
}

if (import.meta.main) {
  const r = await runAndWriteFeast();
  process.stdout.write(feastMarkdown(r));
  process.exit(0);
}
