/**
 * `serve --workers 2` on the embedded stores (`bun src/cli.ts`): the workers share the port and
 * behave as one server: a value written through any connection is served by every later read
 * at once (whichever worker takes it), a revoked key stops everywhere within a second, an
 * unrelated server on the port fails with "address in use", SIGTERM drains all.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
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
