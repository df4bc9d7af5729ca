/**
 * Prints the OpenAPI document the app serves at /openapi.json (pretty JSON, keys in document
 * order), built in process on a throwaway embedded database. For checking that a refactoring
 * leaves the document unchanged: `bun scripts/dump-openapi.ts > before.json`, change, dump
 * again, `diff before.json after.json`.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createApp } from "../src/app.ts";
import { buildDeps, closeDeps } from "../src/cmd/common.ts";
import { loadConfig } from "../src/config.ts";
import { createLogger } from "../src/log.ts";

const dir = mkdtempSync(join(tmpdir(), "fs-openapi-"));
try {
  const deps = await buildDeps(loadConfig({ DATA_DIR: dir, LOG_LEVEL: "silent" }), { log: createLogger("silent", 2) });
  try {
    const app = createApp(deps, { draining: false }, "0.0.0");
    const res = await app.request("/openapi.json");
    if (res.status !== 200) throw new Error(`/openapi.json answered ${res.status}`);
    process.stdout.write(`${JSON.stringify(await res.json(), null, 2)}\n`);
  } finally {
    await closeDeps(deps);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
