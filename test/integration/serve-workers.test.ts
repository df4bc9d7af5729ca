/**
 * `serve --workers 2` on the embedded stores (`bun src/cli.ts`): the workers share the port and
 * behave as one server: a value written through any connection is served by every later read
 * at once (whichever worker takes it), a revoked key stops everywhere within a second, an
 * unrelated server on the port fails with "address in use", SIGTERM drains all. A write by
 * another process makes a process's cache forget only the entities it wrote. With no
 * SERVE_WORKERS, `serve` runs one worker per core.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { freePort } from "../harness/services.ts";

const ROOT = resolve(import.meta.dir, "../..");

function cli(env: Record<string, string>, args: string[]): { code: number; out: string; err: string } {
  const p = Bun.spawnSync([process.execPath, "src/cli.ts", ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode ?? -1, out: p.stdout.toString(), err: p.stderr.toString() };
}

describe("serve --workers 2", () => {
  let dir: string;
  let env: Record<string, string>;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "fs-workers-"));
    env = { DATA_DIR: dir, LOG_LEVEL: "info", POSTGRES_URL: "", REDIS_URL: "", SERVE_WORKERS: "1" };
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("one server: writes served by every worker at once, revocation everywhere, address in use, SIGTERM drains all", async () => {
    const admin = cli(env, ["keys", "create", "--tenant", "t", "--scopes", "admin"]).out.trim().split("\n").pop() as string;
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const server = Bun.spawn([process.execPath, "src/cli.ts", "serve", "--workers", "2", "--port", String(port), "--host", "127.0.0.1"], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdout: "pipe",
      stderr: "inherit",
    });
    const stdout = new Response(server.stdout).text();
    // a fresh connection per request: the kernel picks a worker for each
    const call = (path: string, key: string, body?: unknown): Promise<Response> =>
      fetch(`${url}${path}`, {
        method: body === undefined ? "GET" : "POST",
        headers: { "x-api-key": key, "content-type": "application/json", connection: "close" },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        keepalive: false,
      });
    try {
      for (let i = 0; ; i++) {
        if (await fetch(`${url}/healthz`).then((r) => r.ok, () => false)) break;
        if (i > 400) throw new Error("serve --workers 2 did not start");
        await Bun.sleep(50);
      }
      // both workers up: an unrelated server on the same port is refused
      await Bun.sleep(500);
      const other = cli(env, ["serve", "--port", String(port), "--host", "127.0.0.1"]);
      expect(other.code).toBe(2);
      expect(other.err).toContain("address in use");

      expect((await call("/api/v1/features/register", admin, { name: "n", version: 1, dtype: "int32", entity_type: "user" })).status).toBe(201);
      await Bun.sleep(300); // definitions reach the other worker through the change feed
      for (let v = 1; v <= 15; v++) {
        const w = await call("/api/v1/features/write", admin, { entity_type: "user", records: [{ entity_id: "u", event_time: new Date(Date.UTC(2024, 0, 1, 0, 0, v)).toISOString(), features: { n: v } }] });
        expect(w.status).toBe(200);
        for (let r = 0; r < 4; r++) {
          const res = await call("/api/v1/features/online", admin, { entity_id: "u", feature_names: ["n"] });
          expect(res.status).toBe(200);
          expect(((await res.json()) as { features: { n: number } }).features.n).toBe(v);
        }
      }

      const created = cli(env, ["keys", "create", "--tenant", "t", "--scopes", "read"]).out.trim().split("\n");
      const reader = created.pop() as string;
      const id = /created key (\S+)/.exec(created[0] ?? "")?.[1] ?? "missing";
      for (let r = 0; r < 6; r++) expect((await call("/api/v1/features", reader)).status).toBe(200);
      const revoked = cli(env, ["keys", "revoke", id]);
      expect(revoked.code).toBe(0);
      await Bun.sleep(1000);
      for (let r = 0; r < 8; r++) expect((await call("/api/v1/features", reader)).status).toBe(401);

      const metrics = await (await fetch(`${url}/metrics`)).text();
      expect(metrics).toMatch(/feature_store_http_requests_total\{[^}]*worker="[12]"/);
    } finally {
      server.kill("SIGTERM");
    }
    expect(await server.exited).toBe(0);
    const lines = (await stdout).split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    // every line whole; both workers answered online reads; both drained and stopped
    const onlineBy = new Set(lines.filter((l) => l.route === "/api/v1/features/online").map((l) => l.worker));
    expect([...onlineBy].sort()).toEqual([1, 2]);
    expect(lines.filter((l) => l.msg === "stopped").map((l) => l.worker).sort()).toEqual([1, 2]);
  }, 120_000);

  test("one rate limit per key for all workers (counted by the supervisor, no Redis)", async () => {
    const key = cli(env, ["keys", "create", "--tenant", "t", "--scopes", "read"]).out.trim().split("\n").pop() as string;
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const server = Bun.spawn([process.execPath, "src/cli.ts", "serve", "--workers", "2", "--port", String(port), "--host", "127.0.0.1"], {
      cwd: ROOT,
      env: { ...process.env, ...env, RATE_LIMIT_PER_KEY: "12", RATE_LIMIT_WINDOW_MS: "600000" },
      stdout: "pipe",
      stderr: "inherit",
    });
    const stdout = new Response(server.stdout).text();
    const statuses: number[] = [];
    try {
      for (let i = 0; ; i++) {
        if (await fetch(`${url}/healthz`).then((r) => r.ok, () => false)) break;
        if (i > 400) throw new Error("serve --workers 2 did not start");
        await Bun.sleep(50);
      }
      await Bun.sleep(500); // both workers up
      // a fresh connection per request: the kernel picks a worker for each
      for (let r = 0; r < 36; r++) {
        const res = await fetch(`${url}/api/v1/features`, { headers: { "x-api-key": key, connection: "close" }, keepalive: false });
        await res.arrayBuffer();
        statuses.push(res.status);
      }
    } finally {
      server.kill("SIGTERM");
    }
    expect(await server.exited).toBe(0);
    // one window of 12 for the key, whichever worker answered: 12 allowed, the rest 429
    expect(statuses.filter((s) => s === 200).length).toBe(12);
    expect(statuses.filter((s) => s === 429).length).toBe(24);
    const lines = (await stdout).split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    const by = new Set(lines.filter((l) => l.route === "/api/v1/features" || l.path === "/api/v1/features").map((l) => l.worker));
    expect([...by].sort()).toEqual([1, 2]);
  }, 120_000);

  test("workers whose supervisor was killed (SIGKILL) drain and exit, freeing the port", async () => {
    const port = await freePort();
    const server = Bun.spawn([process.execPath, "src/cli.ts", "serve", "--workers", "2", "--port", String(port), "--host", "127.0.0.1"], {
      cwd: ROOT,
      env: { ...process.env, ...env, LOG_LEVEL: "warn" },
      stdout: "ignore",
      stderr: "ignore",
    });
    for (let i = 0; ; i++) {
      if (await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false)) break;
      if (i > 400) throw new Error("serve --workers 2 did not start");
      await Bun.sleep(50);
    }
    server.kill("SIGKILL");
    await server.exited;
    // the port is free again once the orphaned workers have gone (they look every second)
    let free = false;
    for (let i = 0; i < 100 && !free; i++) {
      await Bun.sleep(100);
      free = await fetch(`http://127.0.0.1:${port}/healthz`, { keepalive: false }).then(() => false, () => true);
    }
    expect(free).toBe(true);
  }, 60_000);
});

/** Starts `serve` (bun src/cli.ts) with `env` and the given extra arguments; resolves once /healthz answers. */
async function startServe(env: Record<string, string | undefined>, args: string[], port: number) {
  const server = Bun.spawn([process.execPath, "src/cli.ts", "serve", "--host", "127.0.0.1", ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdout: "pipe", stderr: "inherit" });
  const stdout = new Response(server.stdout).text();
  for (let i = 0; ; i++) {
    if (await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false)) break;
    if (i > 400) throw new Error("serve did not start");
    await Bun.sleep(50);
  }
  const lines = async () => (await stdout).split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  return { server, lines };
}

describe("another process's write: the in-process cache forgets only the entities it wrote", () => {
  let dir: string;
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("a value written by a sibling process is served fresh; another entity stays cached (hit metric)", async () => {
    dir = mkdtempSync(join(tmpdir(), "fs-fine-"));
    const env = { DATA_DIR: dir, LOG_LEVEL: "warn", POSTGRES_URL: "", REDIS_URL: "", SERVE_WORKERS: "1" };
    const admin = cli(env, ["keys", "create", "--tenant", "t", "--scopes", "admin"]).out.trim().split("\n").pop() as string;
    const [portA, portB] = [await freePort(), await freePort()];
    const a = await startServe(env, ["--port", String(portA)], portA);
    const b = await startServe(env, ["--port", String(portB)], portB);
    const call = (port: number, path: string, body: unknown) =>
      fetch(`http://127.0.0.1:${port}${path}`, { method: "POST", headers: { "x-api-key": admin, "content-type": "application/json" }, body: JSON.stringify(body) });
    const write = async (port: number, entity: string, v: number) =>
      expect((await call(port, "/api/v1/features/write", { entity_type: "user", records: [{ entity_id: entity, event_time: new Date(Date.UTC(2024, 0, 1, 0, 0, v)).toISOString(), features: { n: v } }] })).status).toBe(200);
    const read = async (port: number, entity: string) => {
      const res = await call(port, "/api/v1/features/online", { entity_id: entity, feature_names: ["n"] });
      expect(res.status).toBe(200);
      return ((await res.json()) as { features: { n: number } }).features.n;
    };
    const hits = async (port: number) => Number(/feature_store_cache_requests_total\{result="hit"\} (\d+)/.exec(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text())?.[1] ?? 0);
    try {
      expect((await call(portA, "/api/v1/features/register", { name: "n", version: 1, dtype: "int32", entity_type: "user" })).status).toBe(201);
      await write(portA, "u1", 1);
      await write(portA, "u2", 1);
      // both entities in A's cache (read once more: the first read after a write may fill it)
      for (const e of ["u1", "u2", "u1", "u2"]) expect(await read(portA, e)).toBe(1);
      const before = await hits(portA);
      expect(await read(portA, "u2")).toBe(1);
      expect(await hits(portA)).toBe(before + 1);
      // B (another process) writes u1, several times; every read through A right after serves it
      for (let v = 2; v <= 6; v++) {
        await write(portB, "u1", v);
        const h = await hits(portA);
        expect(await read(portA, "u1")).toBe(v); // forgotten, read from SQLite
        expect(await hits(portA)).toBe(h);
        expect(await read(portA, "u2")).toBe(1); // still cached
        expect(await hits(portA)).toBe(h + 1);
      }
    } finally {
      a.server.kill("SIGTERM");
      b.server.kill("SIGTERM");
    }
    expect(await a.server.exited).toBe(0);
    expect(await b.server.exited).toBe(0);
  }, 60_000);
});

describe("serve with no SERVE_WORKERS: one worker per core", () => {
  test("the default runs availableParallelism() workers; port 0 is shared too; a worker that dies stops all (exit non-zero)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fs-default-workers-"));
    try {
      const env = { DATA_DIR: dir, LOG_LEVEL: "info", POSTGRES_URL: "", REDIS_URL: "", SERVE_WORKERS: undefined };
      const server = Bun.spawn([process.execPath, "src/cli.ts", "serve", "--host", "127.0.0.1", "--port", "0"], { cwd: ROOT, env: { ...process.env, ...env }, stdout: "pipe", stderr: "inherit" });
      const reader = server.stdout.getReader();
      const seen: Record<string, unknown>[] = [];
      let buffered = "";
      const cores = availableParallelism();
      // the start lines of every worker (the system chose the port: the first line names it)
      while (seen.filter((l) => l.msg === "feature-store serving").length < cores) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`serve exited: ${JSON.stringify(seen)}`);
        buffered += new TextDecoder().decode(value);
        const parts = buffered.split("\n");
        buffered = parts.pop() ?? "";
        for (const l of parts.filter(Boolean)) seen.push(JSON.parse(l) as Record<string, unknown>);
      }
      const starts = seen.filter((l) => l.msg === "feature-store serving");
      expect(starts.map((l) => l.worker).sort()).toEqual(Array.from({ length: cores }, (_, i) => i + 1));
      expect(new Set(starts.map((l) => l.url)).size).toBe(1);
      const url = String(starts[0]?.url).replace(/\/$/, "");
      expect(url).not.toMatch(/:0$/);
      expect((await fetch(`${url}/healthz`)).status).toBe(200);
      if (cores > 1) {
        // a worker started by the supervisor dies: the others and the supervisor stop, with its
        // exit code (137: killed), or 1 for a 0
        const children = (await Bun.file(`/proc/${server.pid}/task/${server.pid}/children`).text()).trim().split(/\s+/).map(Number);
        expect(children.length).toBe(cores - 1);
        process.kill(children[0] as number, "SIGKILL");
        expect(await server.exited).toBe(137);
      } else {
        server.kill("SIGTERM");
        expect(await server.exited).toBe(0);
      }
      reader.releaseLock();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
