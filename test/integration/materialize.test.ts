/**
 * `register` with `sources:` and `materialize`, driven through the CLI as a user runs it, on
 * real files written by the tests (Parquet by hyparquet-writer, CSV with quoting, unicode and
 * empty fields) and a real PostgreSQL source table: idempotent re-runs, overlapping windows,
 * kill -9 at random points with an exact count afterwards, a file changing between runs,
 * wrong types, a missing file, and a source connection failing mid-run.
 *
 * The store under test is the embedded one (its file is inspected read-only to count values);
 * POSTGRES_URL names a server for the source table, as in postgres.test.ts.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { Database as Sqlite } from "bun:sqlite";
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { gzipSync } from "node:zlib";
import { parquetWriteFile } from "hyparquet-writer";
import postgres from "postgres";
import type { Summary } from "../../src/sources/materialize.ts";
import { createDatabaseAt, startPostgres, type PgService } from "../harness/services.ts";

const ROOT = resolve(import.meta.dir, "../..");
const CLI = join(ROOT, "src/cli.ts");
const CI = Boolean(process.env.CI);
const T0 = Date.UTC(2024, 0, 1);
const MIN = 60_000;
const cleanups: (() => Promise<unknown> | void)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => undefined);
}, 120_000);

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), "fs-mat-"));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function env(dir: string, extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", DATA_DIR: join(dir, "data"), LOG_LEVEL: "warn", ...extra };
}

function cli(dir: string, args: string[], extra: Record<string, string> = {}): Run {
  const p = Bun.spawnSync([process.execPath, CLI, ...args], { cwd: dir, env: env(dir, extra), stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode ?? -1, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

/** The --json summary line of a run. */
function summary(r: Run): Summary {
  const line = r.stdout.trim().split("\n").at(-1);
  if (!line) throw new Error(`no summary; stderr: ${r.stderr}`);
  return JSON.parse(line) as Summary;
}

/**
 * Values in the embedded history, and the online (latest) rows (`online_values`, a view over
 * the history since migration 0007: a probe per history row, so counted only when asked).
 */
function counts(dir: string, online = true): { history: number; online: number } {
  const db = new Sqlite(join(dir, "data/feature-store.db"), { readonly: true });
  db.exec("PRAGMA busy_timeout = 5000"); // a writer killed mid-transaction leaves recovery to the next reader
  try {
    const h = db.query("SELECT count(*) AS n FROM feature_values").get() as { n: number };
    const o = online ? (db.query("SELECT count(*) AS n FROM online_values").get() as { n: number }) : { n: Number.NaN };
    return { history: h.n, online: o.n };
  } finally {
    db.close();
  }
}

/** event_time of the online value of (feature name, entity). */
function onlineTime(dir: string, feature: string, entity: string): number | null {
  const db = new Sqlite(join(dir, "data/feature-store.db"), { readonly: true });
  db.exec("PRAGMA busy_timeout = 5000"); // a writer killed mid-transaction leaves recovery to the next reader
  try {
    const r = db
      .query("SELECT o.event_time AS t FROM online_values o JOIN feature_definitions d ON d.id = o.feature_id WHERE d.name = ? AND o.entity_id = ?")
      .get(feature, entity) as { t: number } | null;
    return r?.t ?? null;
  } finally {
    db.close();
  }
}

const FEATURES = `features:
  - {name: user_age, version: 1, dtype: int32, entity_type: user}
  - {name: user_ltv, version: 1, dtype: float64, entity_type: user}
  - {name: user_city, version: 1, dtype: string, entity_type: user}
`;

/** A Parquet file of `n` rows: `entities` users, one row a minute from T0 + offset minutes. */
function writeParquet(path: string, n: number, opts: { entities?: number; offset?: number; ltvAsString?: boolean; gzip?: boolean } = {}): void {
  const entities = opts.entities ?? 50;
  const ids: string[] = [];
  const ts: Date[] = [];
  const age: number[] = [];
  const ltv: (number | string)[] = [];
  const city: string[] = [];
  for (let i = 0; i < n; i++) {
    ids.push(`u${i % entities}`);
    ts.push(new Date(T0 + ((opts.offset ?? 0) + i) * MIN));
    age.push(20 + (i % 60));
    ltv.push(opts.ltvAsString ? `v${i}` : i * 0.25);
    city.push(i % 3 === 0 ? "Zürich" : "東京");
  }
  parquetWriteFile({
    filename: path,
    columnData: [
      { name: "user_id", data: ids, type: "STRING" },
      { name: "ts", data: ts, type: "TIMESTAMP" },
      { name: "age", data: age, type: "INT32" },
      { name: "ltv", data: ltv, type: opts.ltvAsString ? "STRING" : "DOUBLE" },
      { name: "city", data: city, type: "STRING" },
    ],
    rowGroupSize: 5_000,
    ...(opts.gzip ? { codec: "GZIP" as const, compressors: { GZIP: (input: Uint8Array) => new Uint8Array(gzipSync(input)) } } : {}),
  });
}

function parquetSource(name: string, path: string): string {
  return `sources:
  - name: ${name}
    kind: parquet
    path: ${path}
    entity_column: user_id
    event_time_column: ts
    features: {age: user_age, ltv: user_ltv, city: user_city}
`;
}

function setup(n: number, opts: Parameters<typeof writeParquet>[2] = {}): string {
  const dir = tmp();
  writeParquet(join(dir, "users.parquet"), n, opts);
  writeFileSync(join(dir, "defs.yaml"), FEATURES + parquetSource("users", "users.parquet"));
  const r = cli(dir, ["register", "defs.yaml", "--tenant", "acme"]);
  expect(r.code, r.stderr).toBe(0);
  expect(r.stdout).toContain("new       source users: parquet, 1 file(s)");
  return dir;
}

describe("parquet sources", () => {
  test("register validates, materialize loads every value once, the newest per entity online, and a re-run stores nothing", () => {
    const dir = setup(1_000);
    const again = cli(dir, ["register", "defs.yaml", "--tenant", "acme"]);
    expect(again.stdout).toContain("unchanged source users");

    const first = cli(dir, ["materialize", "users", "--tenant", "acme", "--json"]);
    expect(first.code, first.stderr).toBe(0);
    const s1 = summary(first);
    expect(s1.rows_read).toBe(1_000);
    expect(s1.values_stored).toBe(3_000);
    expect(s1.identical_resends).toBe(0);
    expect(first.stderr).toContain("values stored      3000");
    expect(counts(dir)).toEqual({ history: 3_000, online: 150 });
    // u7's rows are i = 7, 57, ..., 957: the newest is row 957
    expect(onlineTime(dir, "user_age", "u7")).toBe(T0 + 957 * MIN);

    const second = cli(dir, ["materialize", "users", "--tenant", "acme", "--json"]);
    expect(second.code, second.stderr).toBe(0);
    expect(summary(second).values_stored).toBe(0);
    expect(summary(second).identical_resends).toBe(3_000);
    expect(counts(dir).history).toBe(3_000);
  }, 60_000);

  test("overlapping windows store the union once; --incremental starts at the watermark", () => {
    const dir = setup(600);
    const a = summary(cli(dir, ["materialize", "users", "--tenant", "acme", "--json", "--start", new Date(T0).toISOString(), "--end", new Date(T0 + 300 * MIN).toISOString()]));
    expect(a.values_stored).toBe(900);
    expect(a.rows_outside_window).toBe(300);
    const b = summary(cli(dir, ["materialize", "users", "--tenant", "acme", "--json", "--start", new Date(T0 + 200 * MIN).toISOString(), "--end", new Date(T0 + 400 * MIN).toISOString()]));
    expect(b.values_stored).toBe(300);
    expect(b.identical_resends).toBe(300);
    expect(counts(dir).history).toBe(1_200);
    // the watermark is the greatest event time loaded (row 399); incremental takes the rest
    const c = summary(cli(dir, ["materialize", "users", "--tenant", "acme", "--json", "--incremental"]));
    expect(c.window.start).toBe(new Date(T0 + 399 * MIN).toISOString());
    expect(c.values_stored).toBe(600);
    expect(c.identical_resends).toBe(3);
    expect(counts(dir).history).toBe(1_800);
  }, 60_000);

  test("kill -9 at random points, then the same command: every value stored exactly once", async () => {
    const n = 30_000;
    const dir = setup(n, { entities: 997 });
    const args = ["materialize", "users", "--tenant", "acme", "--chunk-rows", "300", "--json"];
    const kills: number[] = [];
    for (let attempt = 0; attempt < 4; attempt++) {
      const before = existsSync(join(dir, "data/feature-store.db")) ? counts(dir, false).history : 0;
      const p = Bun.spawn([process.execPath, CLI, ...args], { cwd: dir, env: env(dir), stdout: "pipe", stderr: "pipe" });
      // kill once this run has stored a random share of what is left (a waited time was too long
      // once materialize got fast: the run finished before the kill)
      const target = before + 1 + Math.floor(Math.random() * ((3 * n - before) / 2));
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline && counts(dir, false).history < target && p.exitCode === null) await Bun.sleep(10);
      if (p.exitCode !== null) break; // finished before the kill
      p.kill("SIGKILL");
      await p.exited;
      kills.push(counts(dir, false).history);
    }
    expect(kills.length).toBeGreaterThan(0);
    const last = cli(dir, args);
    expect(last.code, last.stderr).toBe(0);
    expect(summary(last).resumed).toBe(true);
    expect(counts(dir)).toEqual({ history: 3 * n, online: 3 * 997 });
    const again = summary(cli(dir, args));
    expect(again.values_stored).toBe(0);
    expect(again.resumed).toBe(false);
    console.log(`kill -9 after ${kills.join(", ")} stored values; final count ${counts(dir).history} of ${3 * n}`);
  }, 180_000);

  test("a column of the wrong type is refused at register time; nothing is applied", () => {
    const dir = tmp();
    writeParquet(join(dir, "users.parquet"), 10, { ltvAsString: true });
    writeFileSync(join(dir, "defs.yaml"), FEATURES + parquetSource("users", "users.parquet"));
    const r = cli(dir, ["register", "defs.yaml", "--tenant", "acme"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('invalid   source users: feature user_ltv column "ltv" is string; expected something storable as float64');
    expect(r.stderr).toContain("nothing was applied");
    const m = cli(dir, ["materialize", "users", "--tenant", "acme"]);
    expect(m.code).toBe(2);
    expect(m.stderr).toContain('unknown source "users"');
  }, 60_000);

  test("a missing file: registered unchecked, materialize stops with a clear error, then loads once it exists", () => {
    const dir = tmp();
    writeFileSync(join(dir, "defs.yaml"), FEATURES + parquetSource("users", "parts/*.parquet"));
    const r = cli(dir, ["register", "defs.yaml", "--tenant", "acme", "--dry-run"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("columns not checked: no file matches");
    expect(cli(dir, ["register", "defs.yaml", "--tenant", "acme"]).code).toBe(0);
    const m = cli(dir, ["materialize", "users", "--tenant", "acme"]);
    expect(m.code).toBe(1);
    expect(m.stderr).toContain(`no file matches ${join(dir, "parts/*.parquet")}`);
    rmSync(join(dir, "parts"), { recursive: true, force: true });
    Bun.spawnSync(["mkdir", "-p", join(dir, "parts")]);
    writeParquet(join(dir, "parts/a.parquet"), 100);
    writeParquet(join(dir, "parts/b.parquet"), 100, { offset: 100, gzip: true }); // gzip-compressed pages
    const ok = cli(dir, ["materialize", "users", "--tenant", "acme", "--json"]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(summary(ok).values_stored).toBe(600);
  }, 60_000);
});

describe("csv sources", () => {
  const CSV_DEFS = `${FEATURES}sources:
  - name: crm
    kind: csv
    path: crm/*.csv
    entity_column: id
    event_time_column: updated
    features: {age: user_age, ltv: user_ltv, city: user_city}
`;
  const HEADER = "id,updated,age,ltv,city\n";

  function csvDir(body: string): string {
    const dir = tmp();
    Bun.spawnSync(["mkdir", "-p", join(dir, "crm")]);
    writeFileSync(join(dir, "crm/a.csv"), HEADER + body);
    writeFileSync(join(dir, "defs.yaml"), CSV_DEFS);
    const r = cli(dir, ["register", "defs.yaml", "--tenant", "acme"]);
    expect(r.code, r.stderr).toBe(0);
    return dir;
  }

  test("quoting, unicode and empty fields load as written; empty cells store no value", () => {
    const dir = csvDir(
      [
        `u1,2024-01-01T00:00:00Z,31,1.5,"Zürich, ""old town"""`,
        `"ü-2",2024-01-01T00:01:00+02:00,,2.5,"line one\nline two"`,
        `u3,2024-01-01T00:02:00Z,40,,東京`,
      ].join("\n") + "\n",
    );
    const r = cli(dir, ["materialize", "crm", "--tenant", "acme", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const s = summary(r);
    expect(s.rows_read).toBe(3);
    expect(s.values_stored).toBe(7);
    expect(s.null_values).toBe(2);
    const db = new Sqlite(join(dir, "data/feature-store.db"), { readonly: true });
    db.exec("PRAGMA busy_timeout = 5000"); // a writer killed mid-transaction leaves recovery to the next reader
    const ids = (db.query("SELECT DISTINCT entity_id FROM online_values ORDER BY entity_id").all() as { entity_id: string }[]).map((x) => x.entity_id);
    db.close();
    expect(ids).toEqual(["u1", "u3", "ü-2"]);
    expect(onlineTime(dir, "user_ltv", "ü-2")).toBe(Date.parse("2023-12-31T22:01:00Z"));
  }, 60_000);

  test("an invalid row stops the run with file, row and reason, storing nothing from its chunk; --skip-invalid stores the rest", () => {
    const rows = ["u1,2024-01-01T00:00:00Z,31,1.5,a", "u2,2024-01-01T00:01:00Z,thirty,2.5,b", "u3,not-a-time,40,3.5,c", "u4,2024-01-01T00:03:00Z,41,4.5", "u5,2024-01-01T00:04:00Z,42,5.5,e"];
    const dir = csvDir(rows.join("\n") + "\n");
    const r = cli(dir, ["materialize", "crm", "--tenant", "acme"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${join(dir, "crm/a.csv")}, row 2: column "age" (user_age): expected an integer (int32)`);
    expect(r.stderr).toContain("nothing from its chunk was stored");
    expect(existsSync(join(dir, "data/feature-store.db")) ? counts(dir).history : 0).toBe(0);

    const s = cli(dir, ["materialize", "crm", "--tenant", "acme", "--json", "--skip-invalid=bad.jsonl"]);
    expect(s.code, s.stderr).toBe(0);
    const sum = summary(s);
    expect(sum.rows_rejected).toBe(3);
    expect(sum.values_stored).toBe(6);
    expect(sum.first_rejected.map((x) => x.row)).toEqual([2, 3, 4]);
    expect(Object.keys(sum.rejected_by_reason).sort()).toEqual(["age: expected an integer (int32)", "updated: event time is not a timestamp (RFC 3339 text, or a timestamp column)", "wrong number of fields"]);
    const bad = readFileSync(join(dir, "bad.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(bad.map((b) => b.row)).toEqual([2, 3, 4]);
    expect(bad[0].cells.age).toBe("thirty");
    expect(s.stderr).toContain("rows rejected      3 (written to bad.jsonl)");
  }, 60_000);

  test("a file that changes between runs: the next run stores only what is new", () => {
    const dir = csvDir("u1,2024-01-01T00:00:00Z,31,1.5,a\nu2,2024-01-01T00:01:00Z,32,2.5,b\n");
    expect(summary(cli(dir, ["materialize", "crm", "--tenant", "acme", "--json"])).values_stored).toBe(6);
    appendFileSync(join(dir, "crm/a.csv"), "u1,2024-01-02T00:00:00Z,33,9.5,c\n");
    // an edited row (same entity and time, new value) is a new value too
    writeFileSync(join(dir, "crm/a.csv"), readFileSync(join(dir, "crm/a.csv"), "utf8").replace("u2,2024-01-01T00:01:00Z,32", "u2,2024-01-01T00:01:00Z,35"));
    const s = summary(cli(dir, ["materialize", "crm", "--tenant", "acme", "--json"]));
    expect(s.values_stored).toBe(4);
    expect(s.identical_resends).toBe(5);
    expect(onlineTime(dir, "user_age", "u1")).toBe(Date.parse("2024-01-02T00:00:00Z"));
  }, 60_000);
});

// ───────────────────────────── PostgreSQL source ─────────────────────────────

let harness: PgService | undefined;
async function resolveServer(): Promise<string | undefined> {
  const v = process.env.POSTGRES_URL;
  if (v) return v;
  if (CI) return undefined;
  try {
    harness = await startPostgres();
    cleanups.push(() => harness?.stop());
    return harness.url;
  } catch (e) {
    console.warn(`POSTGRES_URL unset and the harness could not start PostgreSQL (${(e as Error).message}): skipping the PostgreSQL source tests`);
    return undefined;
  }
}
const serverUrl = await resolveServer();

test("POSTGRES_URL names a real PostgreSQL in CI", () => {
  if (CI) expect(process.env.POSTGRES_URL, "POSTGRES_URL must be set in CI (run via `npm test`)").toBeTruthy();
});

describe.skipIf(!serverUrl)("postgres sources", () => {
  async function sourceDb(rows: number): Promise<{ url: string; sql: postgres.Sql }> {
    const url = await createDatabaseAt(serverUrl as string);
    const sql = postgres(url, { max: 2, onnotice: () => {} });
    cleanups.push(() => sql.end({ timeout: 1 }));
    await sql`CREATE TABLE user_stats (user_id bigint NOT NULL, computed_at timestamptz NOT NULL, ingested_at timestamptz NOT NULL, orders int8, spend float8, embedding float4[])`;
    await sql`INSERT INTO user_stats SELECT i % 97, to_timestamp(1704067200 + i * 60), to_timestamp(1704067200 + i * 60 + 5), i, i * 0.5, ARRAY[i::float4, 1.5] FROM generate_series(0, ${rows - 1}) AS i`;
    return { url, sql };
  }

  const PG_DEFS = `features:
  - {name: user_orders, version: 1, dtype: int64, entity_type: user}
  - {name: user_spend, version: 1, dtype: float64, entity_type: user}
  - {name: user_embedding, version: 1, dtype: "float32[]", entity_type: user}
sources:
  - name: stats
    kind: postgres
    url_env: ANALYTICS_URL
    table: public.user_stats
    entity_column: user_id
    event_time_column: computed_at
    created_column: ingested_at
    features: {orders: user_orders, spend: user_spend, embedding: user_embedding}
`;

  test("a table loads with types checked at register time; a wrong type is refused", async () => {
    const { url } = await sourceDb(1_000);
    const dir = tmp();
    writeFileSync(join(dir, "defs.yaml"), PG_DEFS);
    const unset = cli(dir, ["register", "defs.yaml", "--tenant", "acme", "--dry-run"]);
    expect(unset.stdout).toContain("columns not checked: environment variable ANALYTICS_URL");
    const r = cli(dir, ["register", "defs.yaml", "--tenant", "acme"], { ANALYTICS_URL: url });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("new       source stats: postgres, public.user_stats, 3 feature column(s) of entity type user checked");
    const m = cli(dir, ["materialize", "stats", "--tenant", "acme", "--json"], { ANALYTICS_URL: url });
    expect(m.code, m.stderr).toBe(0);
    expect(summary(m).values_stored).toBe(3_000);
    expect(counts(dir)).toEqual({ history: 3_000, online: 3 * 97 });
    expect(onlineTime(dir, "user_orders", "5")).toBe(1704067200000 + 975 * MIN);

    writeFileSync(join(dir, "bad.yaml"), PG_DEFS.replace("{name: user_spend, version: 1, dtype: float64", "{name: user_spend, version: 2, dtype: bool").replace("spend: user_spend", "spend: user_spend@2"));
    const bad = cli(dir, ["register", "bad.yaml", "--tenant", "acme"], { ANALYTICS_URL: url });
    expect(bad.code).toBe(1);
    expect(bad.stdout).toContain('feature user_spend column "spend" is float; expected something storable as bool');
  }, 60_000);

  test("the source connection failing mid-run stops with a clear error; the same command resumes and stores every row once", async () => {
    // 400 chunks: the run cannot end between its first stored chunk and the kill below, even when
    // this test process is starved of CPU for a while (with 100 chunks of 200 rows it sometimes
    // did, and exited 0)
    const n = 40_000;
    const { url, sql } = await sourceDb(n);
    const dir = tmp();
    writeFileSync(join(dir, "defs.yaml"), PG_DEFS);
    expect(cli(dir, ["register", "defs.yaml", "--tenant", "acme"], { ANALYTICS_URL: url }).code).toBe(0);
    const args = ["materialize", "stats", "--tenant", "acme", "--chunk-rows", "100", "--json"];
    const p = Bun.spawn([process.execPath, CLI, ...args], { cwd: dir, env: env(dir, { ANALYTICS_URL: url }), stdout: "pipe", stderr: "pipe" });
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && (!existsSync(join(dir, "data/feature-store.db")) || counts(dir, false).history === 0)) await Bun.sleep(10);
    const killed = await sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'feature-store-materialize'`;
    expect(killed.length).toBeGreaterThan(0);
    const code = await p.exited;
    const stderr = await new Response(p.stderr).text();
    expect(code).toBe(1);
    expect(stderr).toContain("source stats (table public.user_stats via ANALYTICS_URL)");
    const partial = counts(dir, false).history;
    expect(partial).toBeLessThan(3 * n);
    const again = cli(dir, args, { ANALYTICS_URL: url });
    expect(again.code, again.stderr).toBe(0);
    expect(summary(again).resumed).toBe(true);
    expect(counts(dir).history).toBe(3 * n);
    console.log(`connection killed after ${partial} of ${3 * n} values; resumed to ${counts(dir).history}`);
  }, 120_000);

  test("into the PostgreSQL store (and Redis when REDIS_URL is set): kill -9, resume, exact count, newest value online", async () => {
    const storeUrl = await createDatabaseAt(serverUrl as string);
    const store = postgres(storeUrl, { max: 1, onnotice: () => {} });
    cleanups.push(() => store.end({ timeout: 1 }));
    const tenant = `mat_${Math.random().toString(36).slice(2, 10)}`;
    const n = 12_000;
    const dir = tmp();
    writeParquet(join(dir, "users.parquet"), n, { entities: 499 });
    writeFileSync(join(dir, "defs.yaml"), FEATURES + parquetSource("users", "users.parquet"));
    const stores = { POSTGRES_URL: storeUrl, ...(process.env.REDIS_URL ? { REDIS_URL: process.env.REDIS_URL } : {}) };
    expect(cli(dir, ["migrate"], stores).code).toBe(0);
    expect(cli(dir, ["register", "defs.yaml", "--tenant", tenant], stores).code).toBe(0);
    const history = async () => Number((await store`SELECT count(*)::int AS n FROM feature_values`)[0]?.n ?? 0);
    const args = ["materialize", "users", "--tenant", tenant, "--chunk-rows", "250", "--json"];
    const p = Bun.spawn([process.execPath, CLI, ...args], { cwd: dir, env: env(dir, stores), stdout: "pipe", stderr: "pipe" });
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && (await history()) === 0 && p.exitCode === null) await Bun.sleep(20);
    await Bun.sleep(Math.floor(Math.random() * 300));
    p.kill("SIGKILL");
    await p.exited;
    const partial = await history();
    const last = cli(dir, args, stores);
    expect(last.code, last.stderr).toBe(0);
    expect(await history()).toBe(3 * n);
    expect(summary(cli(dir, args, stores)).values_stored).toBe(0);
    const [row] = await store`SELECT o.event_time FROM online_values o JOIN feature_definitions d ON d.id = o.feature_id WHERE d.tenant = ${tenant} AND d.name = 'user_age' AND o.entity_id = 'u7'`;
    expect(Number(row?.event_time)).toBe(T0 + (7 + 499 * 24) * MIN);
    console.log(`PostgreSQL store: kill -9 after ${partial} of ${3 * n} values; resumed to ${await history()}`);
  }, 120_000);
});
