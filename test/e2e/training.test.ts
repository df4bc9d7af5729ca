/**
 * Training data on the compiled binary: proves the format libraries (apache-arrow, hyparquet,
 * hyparquet-writer, csv-parse) work inside dist/feature-store with no file beside it. Parquet and
 * CSV bodies in, Parquet, Arrow and CSV out over HTTP, and `feature-store export`.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { tableFromIPC } from "apache-arrow";
import { parquetReadObjects } from "hyparquet";
import { freePort } from "../harness/services.ts";
import { parquetFile } from "../support/parquet.ts";

const BIN = resolve(process.env.FS_BINARY ?? "dist/feature-store");
if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run \`bun run build\` first (npm test does)`);

function cli(args: string[], env: Record<string, string>) {
  // a directory with nothing in it: the binary must not need node_modules or any file beside it
  const p = Bun.spawnSync([BIN, ...args], { env: { PATH: process.env.PATH ?? "", HOME: tmpdir(), ...env }, stdout: "pipe", stderr: "pipe", cwd: tmpdir() });
  return { code: p.exitCode ?? -1, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

describe("training data on the binary", () => {
  let dir: string;
  let env: Record<string, string>;
  let base: string;
  let server: ReturnType<typeof Bun.spawn>;
  let key: string;
  const q = "feature_names=age,emb,risk&timestamp_column=ts";

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "fs-e2e-train-"));
    env = { DATA_DIR: join(dir, "data"), LOG_LEVEL: "warn" };
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    server = Bun.spawn([BIN, "serve", "--port", String(port), "--host", "127.0.0.1"], { env: { PATH: process.env.PATH ?? "", ...env }, stdout: "pipe", stderr: "pipe", cwd: tmpdir() });
    for (let i = 0; i < 300; i++) {
      try {
        if ((await fetch(`${base}/healthz`)).ok) break;
      } catch {
        // not up yet
      }
      await Bun.sleep(50);
    }
    const k = cli(["keys", "create", "--tenant", "default", "--scopes", "admin"], env);
    expect(k.code).toBe(0);
    key = k.stdout.trimEnd().split("\n").at(-1) as string;
    // another process's key is visible to the server within a second
    for (let i = 0; i < 60 && (await fetch(`${base}/api/v1/features`, { headers: { "x-api-key": key } })).status !== 200; i++) await Bun.sleep(100);
    const post = (path: string, body: unknown) => fetch(`${base}${path}`, { method: "POST", headers: { "x-api-key": key, "content-type": "application/json" }, body: JSON.stringify(body) });
    for (const d of [
      { name: "age", dtype: "int64", entity_type: "user" },
      { name: "emb", dtype: "float32[]", entity_type: "user" },
      { name: "risk", dtype: "float64", entity_type: "merchant" },
    ]) {
      expect((await post("/api/v1/features/register", { version: 1, ...d })).status).toBe(201);
    }
    const w1 = await post("/api/v1/features/write", {
      entity_type: "user",
      records: [
        { entity_id: "u1", event_time: "2024-01-01T00:00:00Z", features: { age: 30, emb: [0.1, 0.2] } },
        { entity_id: "u1", event_time: "2024-02-01T00:00:00Z", features: { age: "9007199254740993" } },
      ],
    });
    expect(w1.status).toBe(200);
    expect((await post("/api/v1/features/write", { entity_type: "merchant", records: [{ entity_id: "m1", event_time: "2024-01-15T00:00:00Z", features: { risk: 0.5 } }] })).status).toBe(200);
  });

  afterAll(() => {
    server?.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });

  const csvBody = "user_id,merchant_id,ts,label\nu1,m1,2024-01-20T00:00:00Z,1\nu1,m1,2024-03-01T00:00:00Z,0\nu2,m9,2024-03-01T00:00:00Z,1\n";

  function parquetBody(): Uint8Array {
    return parquetFile([
      { name: "user_id", type: "string", data: ["u1", "u1", "u2"] },
      { name: "merchant_id", type: "string", data: ["m1", "m1", "m9"] },
      { name: "ts", type: "timestamp", data: [Date.parse("2024-01-20T00:00:00Z"), Date.parse("2024-03-01T00:00:00Z"), Date.parse("2024-03-01T00:00:00Z")].map(BigInt) },
      { name: "label", type: "int32", data: [1, 0, 1] },
    ]);
  }

  async function call(body: string | Uint8Array, contentType: string, accept: string): Promise<Response> {
    return fetch(`${base}/api/v1/features/batch?${q}`, { method: "POST", headers: { "x-api-key": key, "content-type": contentType, accept }, body });
  }

  test("CSV in, Parquet out: typed columns, labels passed through, point in time", async () => {
    const res = await call(csvBody, "text/csv", "application/vnd.apache.parquet");
    expect(res.status).toBe(200);
    const rows = (await parquetReadObjects({ file: await res.arrayBuffer() })) as Record<string, unknown>[];
    expect(rows.map((r) => [r.user_id, r.label, r.age, r.age__status, r.risk, r.risk__status])).toEqual([
      ["u1", 1n, 30n, "present", 0.5, "present"],
      ["u1", 0n, 9007199254740993n, "present", 0.5, "present"],
      ["u2", 1n, null, "not_found", null, "not_found"],
    ]);
    expect(Array.from(rows[0]?.emb as number[])).toEqual([Math.fround(0.1), Math.fround(0.2)]);
    expect(rows[0]?.ts).toEqual(new Date("2024-01-20T00:00:00Z"));
  });

  test("Parquet in, Arrow IPC stream out", async () => {
    const res = await call(parquetBody(), "application/vnd.apache.parquet", "application/vnd.apache.arrow.stream");
    expect(res.status).toBe(200);
    const t = tableFromIPC(new Uint8Array(await res.arrayBuffer()));
    expect(t.numRows).toBe(3);
    expect(t.schema.fields.map((f) => `${f.name}:${f.type}`)).toEqual([
      "user_id:Utf8",
      "merchant_id:Utf8",
      "ts:Timestamp<MILLISECOND, UTC>",
      "label:Int32",
      "age:Int64",
      "age__status:Utf8",
      "emb:List<Float32>",
      "emb__status:Utf8",
      "risk:Float64",
      "risk__status:Utf8",
    ]);
    expect(t.getChild("age")?.get(1)).toBe(9007199254740993n);
  });

  test("a body that is not Parquet is a 400; an unknown Accept a 406", async () => {
    const bad = await call("not parquet at all", "application/vnd.apache.parquet", "text/csv");
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { detail: string }).detail).toContain("not a Parquet file");
    expect((await call(csvBody, "text/csv", "application/xml")).status).toBe(406);
  });

  test("export: CSV in, Parquet out, plain progress lines off a terminal; bad flags exit 2", async () => {
    const input = join(dir, "entities.csv");
    writeFileSync(input, csvBody);
    const out = join(dir, "train.parquet");
    const r = cli(["export", "--entities", input, "--features", "age,emb,risk", "--timestamp-column", "ts", "--out", out], env);
    expect(r.stderr).toContain("rows");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("wrote 3 rows");
    const rows = (await parquetReadObjects({ file: await Bun.file(out).arrayBuffer() })) as Record<string, unknown>[];
    expect(rows.map((x) => x.age__status)).toEqual(["present", "present", "not_found"]);
    const arrowOut = join(dir, "train.arrow");
    expect(cli(["export", "--entities", input, "--features", "age", "--timestamp-column", "ts", "--out", arrowOut], env).code).toBe(0);
    expect(tableFromIPC(new Uint8Array(await Bun.file(arrowOut).arrayBuffer())).numRows).toBe(3);

    const missing = cli(["export", "--entities", input, "--out", out], env);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("--features");
    const unknown = cli(["export", "--entities", input, "--features", "nope", "--timestamp-column", "ts", "--out", join(dir, "x.csv")], env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("nope");
    expect(existsSync(join(dir, "x.csv"))).toBe(false);
  });
});
