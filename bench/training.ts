/**
 * Training-data throughput (embedded, in process): an entity dataframe of ROWS rows x FEATURES
 * features through lookupFrame and an encoder (Parquet, Arrow, CSV), reported as
 * rows x features per second, plus the process's peak RSS. Usage:
 *   bun bench/training.ts [ROWS=100000] [FEATURES=10] [USERS=10000]
 * DuckDB's ASOF JOIN anchor is not part of this script yet (see the README, Training data).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createEncoder, type OutputFormat } from "../src/formats/encode.ts";
import { frameFromObjects } from "../src/formats/decode.ts";
import { lookupFrame } from "../src/serving/batch.ts";
import { prepareRows, storeRows } from "../src/serving/write.ts";
import { registerFeatures } from "../src/serving/register.ts";
import { prng } from "../src/lib/prng.ts";
import { openTestDeps } from "../test/support/backends.ts";

const [ROWS = 100_000, FEATURES = 10, USERS = 10_000] = process.argv.slice(2).map(Number);
const dir = mkdtempSync(join(tmpdir(), "fs-bench-train-"));
const deps = await openTestDeps({ DATA_DIR: dir });
const tenant = "bench";
const names = Array.from({ length: FEATURES }, (_, i) => `f${i}`);
await registerFeatures(deps, tenant, names.map((name) => ({ input: { name, version: 1, dtype: "float64", entity_type: "user" } })));
await deps.registry.reload();
const rnd = prng(7);
const T0 = Date.parse("2024-01-01T00:00:00Z");
const DAY = 86_400_000;
for (let d = 0; d < 5; d++) {
  for (let start = 0; start < USERS; start += 2_000) {
    const records = Array.from({ length: Math.min(2_000, USERS - start) }, (_, i) => ({
      entity_id: `user_${start + i}`,
      event_time: new Date(T0 + d * DAY).toISOString(),
      features: Object.fromEntries(names.map((n) => [n, rnd()])),
    }));
    const { rows, defs } = prepareRows(deps, tenant, "user", records, Date.now());
    await storeRows(deps, tenant, "user", rows, defs);
  }
}
const entityRows = Array.from({ length: ROWS }, (_, i) => ({ user_id: `user_${Math.floor(rnd() * USERS)}`, timestamp: new Date(T0 + rnd() * 6 * DAY).toISOString(), label: i % 2 }));
const frame = frameFromObjects(entityRows);
let peak = process.memoryUsage.rss();
for (const format of ["parquet", "arrow", "csv"] as OutputFormat[]) {
  const started = performance.now();
  const q = lookupFrame(deps, tenant, frame, { featureNames: names });
  const enc = createEncoder(format, q.columns);
  let bytes = enc.begin().byteLength;
  for await (const chunk of q.chunks) {
    bytes += enc.write(chunk).byteLength;
    peak = Math.max(peak, process.memoryUsage.rss());
  }
  bytes += enc.end().byteLength;
  const secs = (performance.now() - started) / 1000;
  console.log(`${format}: ${ROWS} rows x ${FEATURES} features in ${secs.toFixed(2)} s = ${Math.round((ROWS * FEATURES) / secs).toLocaleString("en-US")} row x features/s, ${(bytes / 1e6).toFixed(1)} MB`);
}
console.log(`peak RSS ${(peak / 2 ** 20).toFixed(0)} MiB`);
await deps.db.close();
rmSync(dir, { recursive: true, force: true });
