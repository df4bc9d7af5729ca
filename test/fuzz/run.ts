/**
 * Schema-driven fuzzing: starts the compiled binary on the embedded default (127.0.0.1, a free
 * port), gives it an admin key and the sample definitions, then runs schemathesis against the
 * live /openapi.json: no 5xx, every response conforms to the documented schema and statuses.
 * The reliability step runs it again deeper (FUZZ_MAX_EXAMPLES, FUZZ_MAX_TIME, FUZZ_CHECKS,
 * FUZZ_SEED) on PostgreSQL + Redis (FUZZ_POSTGRES_URL, FUZZ_REDIS_URL: a fresh database).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { freePort } from "../harness/services.ts";

const ROOT = resolve(import.meta.dir, "../..");
const BIN = resolve(process.env.FS_BINARY ?? join(ROOT, "dist/feature-store"));
const ST = process.env.SCHEMATHESIS ?? join(ROOT, ".cache/venv/bin/schemathesis");
const MAX_EXAMPLES = process.env.FUZZ_MAX_EXAMPLES ?? "60";
/** The core run's checks; the reliability step adds more (FUZZ_CHECKS) and deeper runs. */
const CHECKS =
  process.env.FUZZ_CHECKS ??
  "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection,missing_required_header,ignored_auth";

const dataDir = mkdtempSync(join(tmpdir(), "fs-fuzz-"));
/** FUZZ_POSTGRES_URL + FUZZ_REDIS_URL: fuzz the production stack instead of the embedded default. */
const stores: Record<string, string> = process.env.FUZZ_POSTGRES_URL ? { POSTGRES_URL: process.env.FUZZ_POSTGRES_URL, ...(process.env.FUZZ_REDIS_URL ? { REDIS_URL: process.env.FUZZ_REDIS_URL } : {}) } : {};
const env = { PATH: process.env.PATH ?? "", DATA_DIR: dataDir, LOG_LEVEL: "error", ...stores };
const cli = (args: string[]) => {
  const p = Bun.spawnSync([BIN, ...args], { env, cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${args.join(" ")} failed: ${p.stderr.toString()}`);
  return p.stdout.toString();
};

if (stores.POSTGRES_URL) cli(["migrate"]);
const key = cli(["keys", "create", "--tenant", "fuzz", "--scopes", "admin"]).trimEnd().split("\n").at(-1) as string;
cli(["register", "examples/features.yaml", "--tenant", "fuzz"]);
cli(["seed", "--users", "20", "--days", "2", "--tenant", "fuzz"]);

const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const server = Bun.spawn([BIN, "serve", "--port", String(port), "--host", "127.0.0.1"], { env, stdout: "inherit", stderr: "inherit" });
let code = 1;
try {
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`${base}/healthz`)).ok) break;
    } catch {
      await Bun.sleep(50);
    }
  }
  const args = [
    "--config-file",
    join(ROOT, "test/fuzz/schemathesis.toml"),
    "run",
    `${base}/openapi.json`,
    "--header",
    `X-API-Key: ${key}`,
    "--checks",
    CHECKS,
    "--max-examples",
    MAX_EXAMPLES,
    "--workers",
    "1",
    "--phases",
    process.env.FUZZ_PHASES ?? "examples,coverage,fuzzing,stateful",
    "--suppress-health-check",
    "all",
    "--seed",
    process.env.FUZZ_SEED ?? "20261125",
    ...(process.env.FUZZ_MAX_TIME ? ["--max-time", process.env.FUZZ_MAX_TIME] : []),
    ...(process.env.FUZZ_REPORT ? ["--report", "junit", "--report-dir", process.env.FUZZ_REPORT] : []),
  ];
  console.log(`schemathesis ${args.map((a) => (a.startsWith("X-API-Key") ? "X-API-Key: ***" : a)).join(" ")}`);
  // hooks: serializers for the batch route's NDJSON and Parquet bodies (test/fuzz/fs_fuzz_hooks.py)
  const hooks = { SCHEMATHESIS_HOOKS: "fs_fuzz_hooks", PYTHONPATH: join(ROOT, "test/fuzz") };
  const st = Bun.spawn([ST, ...args], { stdout: "inherit", stderr: "inherit", env: { ...process.env, ...hooks } });
  code = await st.exited;
  // the server must still be healthy after everything schemathesis sent
  const health = await fetch(`${base}/healthz`).then((r) => r.status, () => 0);
  if (health !== 200) {
    console.error(`server unhealthy after fuzzing: /healthz answered ${health}`);
    code = 1;
  }
} finally {
  server.kill("SIGTERM");
  await server.exited;
  rmSync(dataDir, { recursive: true, force: true });
}
process.exit(code);
