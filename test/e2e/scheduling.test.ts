/**
 * The scheduling `serve` asks the kernel for (src/cmd/scheduling.ts), in the compiled binary,
 * read back from the kernel (`/proc/<pid>/task/<tid>/sched`): the thread answering online
 * lookups holds the time slice SERVING_SLICE_US asks for, the bulk lane's thread SCHED_BATCH
 * with BULK_SLICE_US (default: the kernel's slice, not the one it inherited) and its nice 10, each logged at debug; THREAD_SCHEDULING=false leaves both
 * as the kernel made them (the lane's nice 10 stays). Runs where the kernel takes a slice of a
 * thread's own (Linux 6.12 and later, with /proc/<pid>/sched).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { release, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { freePort } from "../harness/services.ts";

const BIN = resolve(process.env.FS_BINARY ?? "dist/feature-store");
if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run \`bun run build\` first (npm test does)`);

const [major = 0, minor = 0] = release().split(".").map(Number);
const SLICES = process.platform === "linux" && (major > 6 || (major === 6 && minor >= 12)) && existsSync("/proc/self/sched") && (process.arch === "x64" || process.arch === "arm64");

interface Thread {
  tid: number;
  name: string;
  policy: number;
  nice: number;
  sliceNs: number;
}

/** A field of /proc/<pid>/task/<tid>/sched (`name   :   value`). */
function field(text: string, name: string): number {
  const m = new RegExp(`^${name.replace(".", "\\.")}\\s+:\\s+(-?\\d+)`, "m").exec(text);
  if (!m) throw new Error(`no ${name} in /proc/.../sched`);
  return Number(m[1]);
}

function thread(pid: number, tid: number): Thread {
  const text = readFileSync(`/proc/${pid}/task/${tid}/sched`, "utf8");
  return {
    tid,
    name: readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim(),
    policy: field(text, "policy"),
    nice: field(text, "prio") - 120,
    sliceNs: field(text, "se.slice"),
  };
}

const threads = (pid: number): Thread[] => readdirSync(`/proc/${pid}/task`).map((t) => thread(pid, Number(t)));

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/**
 * Starts `serve` (one process, one lane thread) with `settings`, sends one write (the lane's
 * thread starts on it), hands the threads to `check`, stops the server and answers its log's
 * scheduling lines.
 */
async function withServer(settings: Record<string, string>, check: (pid: number) => void): Promise<Record<string, unknown>[]> {
  const dir = mkdtempSync(join(tmpdir(), "fs-e2e-sched-"));
  dirs.push(dir);
  const env = { PATH: process.env.PATH ?? "", DATA_DIR: join(dir, "data") };
  const k = Bun.spawnSync([BIN, "keys", "create", "--tenant", "acme", "--scopes", "admin"], { env: { ...env, LOG_LEVEL: "warn" }, cwd: dir, stdout: "pipe", stderr: "pipe" });
  expect(k.exitCode).toBe(0);
  const key = k.stdout.toString().trimEnd().split("\n").at(-1) ?? "";
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const proc = Bun.spawn([BIN, "serve", "--port", String(port), "--host", "127.0.0.1"], {
    env: { ...env, LOG_LEVEL: "debug", SERVE_WORKERS: "1", BULK_WORKERS: "1", SHUTDOWN_TIMEOUT: "3", ...settings },
    cwd: dir,
    stdout: "pipe",
    stderr: "pipe",
  });
  const out = new Response(proc.stdout).text();
  try {
    const post = (path: string, body: unknown) => fetch(`${base}${path}`, { method: "POST", headers: { "content-type": "application/json", "x-api-key": key }, body: JSON.stringify(body) });
    for (let i = 0; ; i++) {
      try {
        if ((await fetch(`${base}/healthz`)).ok) break;
      } catch {
        // not up yet
      }
      if (i > 300) throw new Error("serve did not answer /healthz");
      await Bun.sleep(50);
    }
    expect((await post("/api/v1/features/register", { name: "a", version: 1, dtype: "int64", entity_type: "user" })).status).toBe(201);
    expect((await post("/api/v1/features/write", { entity_type: "user", records: [{ entity_id: "u1", event_time: "2024-01-01T00:00:00Z", features: { a: 1 } }] })).status).toBe(200);
    check(proc.pid);
  } finally {
    proc.kill("SIGTERM");
    await proc.exited;
  }
  return (await out)
    .split("\n")
    .filter((l) => l.includes("thread scheduling"))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .sort((a, b) => String(b.thread).localeCompare(String(a.thread))); // the threads' lines leave in either order: serving, then bulk
}

describe.skipIf(!SLICES)("the scheduling the threads of serve ask for, in the binary", () => {
  test("by default: the serving thread a 100 us slice, the lane's thread SCHED_BATCH with the kernel's slice at nice 10", async () => {
    // the kernel's default slice, as this test's own thread holds it (it asked for nothing)
    const dflt = thread(process.pid, process.pid).sliceNs;
    expect(dflt).not.toBe(100_000);
    let serving: Thread | undefined;
    let lane: Thread[] = [];
    const lines = await withServer({}, (pid) => {
      const all = threads(pid);
      serving = all.find((t) => t.tid === pid);
      lane = all.filter((t) => t.name === "Worker");
    });
    expect(serving).toMatchObject({ policy: 0, nice: 0, sliceNs: 100_000 });
    expect(lane.map(({ policy, nice, sliceNs }) => ({ policy, nice, sliceNs }))).toEqual([{ policy: 3, nice: 10, sliceNs: dflt }]);
    // what was applied is logged at debug, with the thread's id; the lane's thread had inherited the serving thread's slice
    expect(lines).toEqual([
      expect.objectContaining({ level: "debug", msg: "thread scheduling applied", thread: "serving", tid: serving?.tid, policy: "other", nice: 0, slice_us: 100 }),
      expect.objectContaining({ level: "debug", msg: "thread scheduling applied", thread: "bulk", tid: lane[0]?.tid, policy: "batch", nice: 10, slice_us: dflt / 1000, before: { policy: "other", slice_us: 100 } }),
    ]);
  }, 60_000);

  test("SERVING_SLICE_US and BULK_SLICE_US are what the threads hold", async () => {
    let serving: Thread | undefined;
    let lane: Thread[] = [];
    await withServer({ SERVING_SLICE_US: "250", BULK_SLICE_US: "20000" }, (pid) => {
      const all = threads(pid);
      serving = all.find((t) => t.tid === pid);
      lane = all.filter((t) => t.name === "Worker");
    });
    expect(serving).toMatchObject({ policy: 0, nice: 0, sliceNs: 250_000 });
    expect(lane.map(({ policy, nice, sliceNs }) => ({ policy, nice, sliceNs }))).toEqual([{ policy: 3, nice: 10, sliceNs: 20_000_000 }]);
  }, 60_000);

  test("THREAD_SCHEDULING=false leaves the kernel's defaults (the lane keeps its nice 10)", async () => {
    // the kernel's default slice, as this test's own thread holds it (asked nothing either)
    const dflt = thread(process.pid, process.pid).sliceNs;
    expect(dflt).not.toBe(100_000);
    let all: Thread[] = [];
    let pid = 0;
    const lines = await withServer({ THREAD_SCHEDULING: "false" }, (p) => {
      pid = p;
      all = threads(p);
    });
    expect(all.find((t) => t.tid === pid)).toMatchObject({ policy: 0, nice: 0, sliceNs: dflt });
    expect(all.filter((t) => t.name === "Worker").map(({ policy, nice, sliceNs }) => ({ policy, nice, sliceNs }))).toEqual([{ policy: 0, nice: 10, sliceNs: dflt }]);
    // no thread of the process holds another policy or slice
    expect(all.filter((t) => t.policy !== 0 || t.sliceNs !== dflt)).toEqual([]);
    expect(lines.map((l) => [l.thread, l.msg])).toEqual([
      ["serving", "thread scheduling off (THREAD_SCHEDULING=false): the kernel's defaults"],
      ["bulk", "thread scheduling off (THREAD_SCHEDULING=false): the kernel's defaults"],
    ]);
  }, 60_000);
});
