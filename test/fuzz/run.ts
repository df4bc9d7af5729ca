/**
 * Schema-driven fuzzing: starts the compiled binary on the embedded default (127.0.0.1, a free
 * port), gives it an admin key and the sample definitions, then runs schemathesis against the
 * live /openapi.json: no 5xx, every response conforms to the documented schema and statuses.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { freePort } from "../harness/services.ts";

const ROOT = resolve(import.meta.dir, "../..");
const BIN = resolve(process.env.FS_BINARY ?? join(ROOT, "dist/feature-store"));
const ST = process.env.SCHEMATHESIS ?? join(ROOT, ".cache/venv/bin/schemathesis");
const MAX_EXAMPLES = process.env.FUZZ_MAX_EXAMPLES ?? "60";

const dataDir = mkdtempSync(join(tmpdir(), "fs-fuzz-"));
const env = { PATH: process.env.PATH ?? "", DATA_DIR: dataDir, LOG_LEVEL: "error" };
const cli = (args: string[]) => {
  const p = Bun.spawnSync([BIN, ...args], { env, cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${args.join(" ")} failed: ${p.stderr.toString()}`);
  return p.stdout.toString();
};

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
    "run",
    `${base}/openapi.json`,
    "--header",
    `X-API-Key: ${key}`,
    "--checks",
    "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection,missing_required_header,ignored_auth",
    "--max-examples",
    MAX_EXAMPLES,
    "--workers",
    "1",
    "--phases",
    "examples,coverage,fuzzing,stateful",
    "--suppress-health-check",
    "all",
    "--seed",
    process.env.FUZZ_SEED ?? "20261125",
  ];
  console.log(`schemathesis ${args.map((a) => (a.startsWith("X-API-Key") ? "X-API-Key: ***" : a)).join(" ")}`);
  const st = Bun.spawn([ST, ...args], { stdout: "inherit", stderr: "inherit", env: { ...process.env, SCHEMATHESIS_HOOKS: "" } });
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
