/**
 * The bulk lane in the compiled binary: its worker thread is an embedded entrypoint (run from a
 * directory holding no sources), training queries, writes (ours and Feast's) and registrations run there, an online lookup is
 * answered while a large batch is provably still in progress, and SIGTERM starts the drain at
 * once while that batch is held open, then exits 0.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { freePort } from "../harness/services.ts";

const BIN = resolve(process.env.FS_BINARY ?? "dist/feature-store");
if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run \`bun run build\` first (npm test does)`);

const ENTITIES = 10_000;
const ROWS = 100_000;
const FEATURES = ["a", "b", "c"];

describe("the bulk lane in the binary", () => {
  let dir: string;
  let env: Record<string, string>;
  let base: string;
  let proc: ReturnType<typeof Bun.spawn>;
  let key: string;

  async function waitFor(url: string, status = 200): Promise<void> {
    for (let i = 0; i < 300; i++) {
      try {
        if ((await fetch(url)).status === status) return;
      } catch {
        // not up yet
      }
      await Bun.sleep(50);
    }
    throw new Error(`${url} did not answer ${status}`);
  }

  const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${base}${path}`, { method: "POST", headers: { "content-type": "application/json", "x-api-key": key, ...headers }, body: JSON.stringify(body) });

  async function gauge(name: string): Promise<number> {
    const text = await (await fetch(`${base}/metrics`)).text();
    const line = text.split("\n").find((l) => l.startsWith(`${name} `));
    return Number(line?.split(" ")[1]);
  }

  beforeAll(async () => {
    // The working directory holds no sources: the worker must come from inside the binary.
    dir = mkdtempSync(join(tmpdir(), "fs-e2e-lane-"));
    env = { PATH: process.env.PATH ?? "", DATA_DIR: join(dir, "data"), LOG_LEVEL: "warn" };
    const k = Bun.spawnSync([BIN, "keys", "create", "--tenant", "acme", "--scopes", "admin"], { env, cwd: dir, stdout: "pipe", stderr: "pipe" });
    expect(k.exitCode).toBe(0);
    key = k.stdout.toString().trimEnd().split("\n").at(-1) ?? "";
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    proc = Bun.spawn([BIN, "serve", "--port", String(port), "--host", "127.0.0.1"], {
      // one process: the tests read its lane gauges and its drain
      env: { ...env, SERVE_WORKERS: "1", BULK_WORKERS: "1", SHUTDOWN_DELAY: "1", SHUTDOWN_TIMEOUT: "3" },
      cwd: dir,
      stdout: "pipe",
      stderr: "pipe",
    });
    await waitFor(`${base}/healthz`);
  });

  afterAll(() => {
    proc?.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });

  test("writes and batches run in the lane's worker; an online lookup is answered while a batch is in progress", async () => {
    for (const name of FEATURES) expect((await post("/api/v1/features/register", { name, version: 1, dtype: "int64", entity_type: "user" })).status).toBe(201);
    const records = Array.from({ length: ENTITIES }, (_, i) => ({ entity_id: `u${i}`, event_time: "2024-01-01T00:00:00Z", features: { a: i, b: 2 * i, c: 3 * i } }));
    const w = await post("/api/v1/features/write", { entity_type: "user", records });
    expect(w.status).toBe(200);
    expect(await w.json()).toEqual({ written: 3 * ENTITIES });

    const ids = Array.from({ length: ROWS }, (_, i) => `u${i % ENTITIES}`);
    const res = await post("/api/v1/features/batch", { entity_ids: ids, feature_names: FEATURES, timestamp: "2025-01-01T00:00:00Z" }, { accept: "application/x-ndjson" });
    expect(res.status).toBe(200);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const first = await reader.read();
    expect(first.done).toBe(false);
    // Held unread: the batch keeps its bulk-lane slot until its last chunk is taken.
    expect(await gauge("feature_store_bulk_jobs_in_flight")).toBe(1);
    const o = await post("/api/v1/features/online", { entity_id: "u42", feature_names: FEATURES });
    expect(o.status).toBe(200);
    expect(((await o.json()) as { features: unknown }).features).toEqual({ a: 42, b: 84, c: 126 });
    expect(await gauge("feature_store_bulk_jobs_in_flight")).toBe(1);

    const dec = new TextDecoder();
    let text = dec.decode(first.value, { stream: true });
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += dec.decode(value, { stream: true });
    }
    const lines = text.trimEnd().split("\n");
    expect(lines.length).toBe(ROWS);
    const last = JSON.parse(lines[ROWS - 1] as string);
    expect(last.entity_id).toBe(`u${(ROWS - 1) % ENTITIES}`);
    expect(last.features).toEqual({ a: 9999, b: 19998, c: 29997 });
    expect(await gauge("feature_store_bulk_jobs_in_flight")).toBe(0);
  }, 120_000);

  test.skipIf(!existsSync("/proc/self/task"))("the lane's thread alone runs at a lower CPU priority (nice 10): online lookups win the CPU", () => {
    // after the test above, the lane's one thread (BULK_WORKERS=1) exists
    const pid = proc.pid;
    const threads = readdirSync(`/proc/${pid}/task`).map((tid) => {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      // fields after the command name, which is in parentheses: state is field 3, nice field 19
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return { tid: Number(tid), name: readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim(), nice: Number(fields[16]) };
    });
    const lowered = threads.filter((t) => t.nice !== 0);
    expect(lowered.map((t) => ({ name: t.name, nice: t.nice }))).toEqual([{ name: "Worker", nice: 10 }]);
    // the serving thread (the process's first) keeps the process's priority
    expect(threads.find((t) => t.tid === pid)?.nice).toBe(0);
  });

  test("registrations and Feast's push run in the binary's lane worker (its own forms inside the binary)", async () => {
    expect((await post("/api/v1/feature-views/register", { name: "stats", version: 1, entity_type: "user", features: ["a"], push_source: "src" })).status).toBe(201);
    const pushed = await post("/api/v1/feast/push", { push_source_name: "src", df: { user: ["p1"], a: [7], event_timestamp: ["2024-06-01T00:00:00"] } });
    expect(pushed.status).toBe(200);
    const bad = await post("/api/v1/feast/write-to-online-store", { feature_view_name: "stats", df: { user: ["p1"], a: ["x"] } });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { errors: { path: string }[] }).errors[0]?.path).toBe("df.a[0]");
    const o = await post("/api/v1/features/online", { entity_id: "p1", feature_names: ["stats:a"] });
    expect(((await o.json()) as { features: unknown }).features).toEqual({ "stats:a": 7 });
    expect(await gauge("feature_store_bulk_jobs_in_flight")).toBe(0);
  }, 60_000);

  test("SIGTERM while a batch is held open: the drain starts at once, the process exits 0", async () => {
    const ids = Array.from({ length: ROWS }, (_, i) => `u${i % ENTITIES}`);
    const res = await post("/api/v1/features/batch", { entity_ids: ids, feature_names: FEATURES, timestamp: "2025-01-01T00:00:00Z" }, { accept: "application/x-ndjson" });
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    expect(await gauge("feature_store_bulk_jobs_in_flight")).toBe(1);
    proc.kill("SIGTERM");
    // During SHUTDOWN_DELAY /readyz answers 503 at once, although the batch is still running.
    await waitFor(`${base}/readyz`, 503);
    expect(await proc.exited).toBe(0);
    await reader.cancel().catch(() => {});
  }, 60_000);
});
