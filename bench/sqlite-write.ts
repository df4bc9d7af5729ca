/**
 * Embedded store bulk write: values/s through `SqliteDatabase.writeValues` on a temp file, the
 * shape `materialize` gives it (issue 14): BENCH_SQLITE_ROWS rows (default 250,000) x
 * BENCH_SQLITE_FEATURES features (4) over 100,000 entities, one event time per row, in calls of
 * about 100,000 values (materialize's chunk), then the same rows again (an idempotent re-run:
 * every value an identical re-send). Prints the median of BENCH_SQLITE_RUNS runs (3) of each,
 * each run on a fresh file.
 *
 * `bun bench/sqlite-write.ts`; BENCH_SRC=DIR measures another source tree (a scratch copy, e.g.
 * `git archive main src migrations | tar -x -C DIR`), so before and after can be alternated.
 */
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { SqliteDatabase as Db } from "../src/store/sqlite/database.ts";
import type { ValueWrite } from "../src/store/types.ts";
import { loadAverage, num, ROOT, round, TMP_DIR } from "./lib/common.ts";

const ROWS = num("BENCH_SQLITE_ROWS", 250_000);
const FEATURES = num("BENCH_SQLITE_FEATURES", 4);
const RUNS = num("BENCH_SQLITE_RUNS", 3);
const CALL_VALUES = num("BENCH_SQLITE_CALL_VALUES", 100_000);
const SRC = process.env.BENCH_SRC ?? ROOT;

const { SqliteDatabase } = (await import(join(SRC, "src/store/sqlite/database.ts"))) as { SqliteDatabase: typeof Db };

function makeRows(): ValueWrite[] {
  const rows: ValueWrite[] = [];
  const t0 = Date.UTC(2024, 0, 1);
  for (let i = 0; i < ROWS; i++) {
    for (let f = 1; f <= FEATURES; f++) {
      const value = new Uint8Array(9);
      new DataView(value.buffer).setFloat64(1, i * 0.37 + f);
      value[0] = f;
      const value_hash = new Uint8Array(new Bun.CryptoHasher("md5").update(value).digest());
      rows.push({ feature_id: f, entity_id: `user_${i % 100_000}`, event_time: t0 + i * 1000, value, value_hash });
    }
  }
  return rows;
}

async function writeAll(db: Db, rows: ValueWrite[]): Promise<{ secs: number; cpu: number; stored: number }> {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  let stored = 0;
  for (let at = 0; at < rows.length; at += CALL_VALUES) {
    for (const o of await db.writeValues(rows.slice(at, at + CALL_VALUES))) if (o.status === "stored") stored++;
  }
  const c = process.cpuUsage(c0);
  return { secs: (performance.now() - t0) / 1000, cpu: (c.user + c.system) / 1e6, stored };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

const rows = makeRows();
const load = loadAverage();
const fresh: number[] = [];
const again: number[] = [];
const perCpu: number[] = [];
for (let r = 0; r < RUNS; r++) {
  const dir = join(TMP_DIR, `sqlite-write-${process.pid}-${r}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const db = new SqliteDatabase({ dataDir: dir });
  await db.migrate();
  db.setCacheSize(96); // as materialize does (BULK_CACHE_MIB)
  const a = await writeAll(db, rows);
  if (a.stored !== rows.length) throw new Error(`stored ${a.stored} of ${rows.length} values`);
  const b = await writeAll(db, rows);
  if (b.stored !== 0) throw new Error(`a re-run stored ${b.stored} values`);
  await db.close();
  rmSync(dir, { recursive: true, force: true });
  fresh.push(rows.length / a.secs);
  again.push(rows.length / b.secs);
  perCpu.push(rows.length / a.cpu);
  console.log(
    `run ${r + 1}: new ${Math.round(rows.length / a.secs).toLocaleString("en-US")} values/s (${Math.round(rows.length / a.cpu).toLocaleString("en-US")} per CPU-s), ` +
      `re-run ${Math.round(rows.length / b.secs).toLocaleString("en-US")} values/s`,
  );
}
console.log(
  `${SRC === ROOT ? "this tree" : SRC}: ${rows.length.toLocaleString("en-US")} values, median of ${RUNS}: new ${Math.round(median(fresh)).toLocaleString("en-US")} values/s (${Math.round(median(perCpu)).toLocaleString("en-US")} per CPU-s), ` +
    `re-run ${Math.round(median(again)).toLocaleString("en-US")} values/s (load ${round(load, 2)} -> ${round(loadAverage(), 2)})`,
);
