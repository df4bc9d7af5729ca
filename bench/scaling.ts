/**
 * Multi-core scaling (issue 12): online 1 x 10 saturated throughput of `serve --workers 1`
 * against `serve --workers N` (N = the machine's cores, or BENCH_WORKERS), embedded stack,
 * same data directory, same run, one after the other. Reported as max req/s of each and their
 * ratio (the load generator shares the machine: on 2 cores the ratio is a lower bound).
 *
 * `bun bench/scaling.ts` (BENCH_BINARY to skip the build); part `scaling` of `bun run bench`.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { log, round, settings, sleep, TMP_DIR } from "./lib/common.ts";
import { onlineOne, prng } from "./lib/dataset.ts";
import { buildBinary, loadData, startServer, type StackEnv } from "./lib/server.ts";
import { attack, ensureVegeta, saturate, writeTargets } from "./lib/vegeta.ts";

/** Results of bench/scaling.ts. */
export interface ScalingResults {
  scenario: "online_1x10";
  cores: number;
  /** true when BENCH_PIN pinned the server (and so all its workers) to one core */
  pinned: boolean;
  runs: { workers: number; max_rps: number; p99_ms_at_max: number | null }[];
  /** max req/s with N workers / with 1 */
  ratio: number | null;
}

/** Waits until the server's log (bench/lib/server.ts) has the start lines of `workers` workers. */
async function allWorkersUp(name: string, workers: number): Promise<void> {
  const file = join(TMP_DIR, `server-${name}.log`);
  for (let i = 0; i < 300; i++) {
    const started = (existsSync(file) ? readFileSync(file, "utf8") : "").split("\n").filter((l) => l.includes('"msg":"feature-store serving"')).length;
    if (started >= workers) return;
    await sleep(100);
  }
  throw new Error(`${name}: ${workers} workers did not all start within 30 s`);
}

/** Runs the scaling measurement. */
export async function runScaling(opts: { bin?: string; vegeta?: string } = {}): Promise<ScalingResults> {
  const bin = opts.bin ?? (await buildBinary());
  const vegeta = opts.vegeta ?? (await ensureVegeta());
  const cores = cpus().length;
  const n = Math.max(2, Number(process.env.BENCH_WORKERS ?? cores) || cores);
  const entities = Math.min(settings.entities, 20_000);
  const dataDir = mkdtempSync(join(tmpdir(), "fs-bench-scaling-"));
  const runs: ScalingResults["runs"] = [];
  try {
    const loader = await startServer(bin, { DATA_DIR: dataDir }, "scaling-load");
    try {
      await loadData(loader, entities, 1, Date.now());
    } finally {
      await loader.stop();
    }
    const rnd = prng(11);
    const bodies = Array.from({ length: 5000 }, () => onlineOne(Math.floor(rnd() * entities)));
    for (const workers of [1, n]) {
      const stack = { DATA_DIR: dataDir, SERVE_WORKERS: String(workers) } as StackEnv;
      const server = await startServer(bin, stack, `scaling-${workers}`);
      try {
        // /readyz answers once the first worker is ready; the others start after it
        await allWorkersUp(`scaling-${workers}`, workers);
        const file = writeTargets(`scaling-${workers}`, bodies.map((body) => ({ method: "POST" as const, url: `${server.url}/api/v1/features/online`, body, headers: { "x-api-key": server.key, "content-type": "application/json" } })));
        // every worker's cache warm: the connections of a warm-up spread over the workers
        await attack(vegeta, { name: `scaling-${workers}-warmup`, targetsFile: file, rate: 1000, seconds: 5, discard: true });
        log(`scaling: ${workers} worker(s), online 1x10 saturation`);
        const sat = await saturate(vegeta, { name: `scaling-${workers}`, targetsFile: file, start: 2000, stepSeconds: settings.stepSeconds, p99Ms: settings.satP99Ms });
        runs.push({ workers, max_rps: sat.max_rps, p99_ms_at_max: sat.at_max?.p99_ms ?? null });
      } finally {
        await server.stop();
      }
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
  const one = runs.find((r) => r.workers === 1)?.max_rps;
  const many = runs.find((r) => r.workers === n)?.max_rps;
  const res: ScalingResults = { scenario: "online_1x10", cores, pinned: settings.pin, runs, ratio: one && many ? round(many / one, 2) : null };
  log(`scaling: ${runs.map((r) => `${r.workers} worker(s) ${r.max_rps}/s`).join(", ")}; ratio ${res.ratio}`);
  return res;
}

if (import.meta.main) {
  console.log(JSON.stringify(await runScaling(), null, 2));
  process.exit(0);
}
