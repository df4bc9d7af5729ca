/**
 * End to end: the compiled binary (dist/feature-store, built by the test runner or FS_BINARY)
 * driven as a user would, over the CLI and HTTP on 127.0.0.1, on the embedded default.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { freePort } from "../harness/services.ts";

const BIN = resolve(process.env.FS_BINARY ?? "dist/feature-store");
const ROOT = resolve(import.meta.dir, "../..");

if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run \`bun run build\` first (npm test does)`);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(args: string[], env: Record<string, string> = {}): Run {
  const p = Bun.spawnSync([BIN, ...args], { env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...env }, stdout: "pipe", stderr: "pipe", cwd: ROOT });
  return { code: p.exitCode ?? -1, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

function lastLine(s: string): string {
  return s.trimEnd().split("\n").at(-1) ?? "";
}

async function waitFor(url: string, status = 200, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    try {
      if ((await fetch(url)).status === status) return;
    } catch {
      // not up yet
    }
    await Bun.sleep(50);
  }
  throw new Error(`${url} did not answer ${status} within ${timeoutMs} ms`);
}

describe("the binary, as a user runs it", () => {
  let dataDir: string;
  let env: Record<string, string>;
  let base: string;
  let server: ReturnType<typeof Bun.spawn>;
  let admin: string;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), "fs-e2e-"));
    env = { DATA_DIR: dataDir, LOG_LEVEL: "warn" };
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    server = Bun.spawn([BIN, "serve", "--port", String(port), "--host", "127.0.0.1"], {
      env: { PATH: process.env.PATH ?? "", ...env, SHUTDOWN_TIMEOUT: "5" },
      stdout: "pipe",
      stderr: "pipe",
    });
    await waitFor(`${base}/healthz`);
    const k = cli(["keys", "create", "--tenant", "acme", "--scopes", "admin"], env);
    expect(k.code).toBe(0);
    admin = lastLine(k.stdout);
    expect(admin).toMatch(/^fs_[A-Za-z0-9_-]{43}$/);
  });

  afterAll(async () => {
    server?.kill("SIGKILL");
    rmSync(dataDir, { recursive: true, force: true });
  });

  async function api(method: string, path: string, body?: unknown, key: string | null = admin) {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { "content-type": "application/json", ...(key ? { "x-api-key": key } : {}) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    // biome-ignore lint: test JSON
    return { status: res.status, body: json as any, headers: res.headers, text };
  }

  test("help, version, unknown commands and flags, bad configuration", () => {
    for (const c of ["serve", "worker", "migrate", "register", "keys", "seed", "healthcheck"]) {
      const r = cli([c, "--help"]);
      expect([c, r.code]).toEqual([c, 0]);
      expect(r.stdout).toContain("Usage:");
    }
    expect(cli(["--help"]).code).toBe(0);
    expect(cli(["version"]).stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    const unknown = cli(["frobnicate"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("Usage:");
    const badFlag = cli(["serve", "--nope"]);
    expect(badFlag.code).toBe(2);
    const badPort = cli(["serve"], { PORT: "not-a-port", DATA_DIR: dataDir });
    expect(badPort.code).toBe(2);
    expect(badPort.stderr.trim().split("\n")).toHaveLength(1);
    expect(badPort.stderr).toContain("PORT");
    const worker = cli(["worker"], { DATA_DIR: dataDir });
    expect(worker.code).toBe(2);
    expect(worker.stderr.trim().split("\n")).toHaveLength(1);
    expect(worker.stderr).toContain("KAFKA_BROKERS");
    const badPg = cli(["migrate"], { POSTGRES_URL: "mysql://x" });
    expect(badPg.code).toBe(2);
    expect(badPg.stderr).toContain("POSTGRES_URL");
    expect(badPg.stderr).not.toContain("mysql://x");
  });

  test("migrate is idempotent", () => {
    const a = cli(["migrate"], env);
    expect(a.code).toBe(0);
    const b = cli(["migrate"], env);
    expect(b.code).toBe(0);
    expect(b.stdout).toContain("up to date");
  });

  test("the README quick start: register, write, online, batch", async () => {
    const reg = cli(["register", "examples/features.yaml", "--tenant", "acme"], env);
    expect(reg.code).toBe(0);
    expect(reg.stdout).toContain("new       user_age@1");
    const again = cli(["register", "examples/features.yaml", "--tenant", "acme", "--dry-run"], env);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain("unchanged user_age@1");

    const r = await api("POST", "/api/v1/features/register", { name: "user_lifetime_value", version: 1, dtype: "float64", entity_type: "user", ttl_hours: 24 });
    expect(r.status).toBe(200);
    const t = new Date(Date.now() - 60_000).toISOString();
    const w = await api("POST", "/api/v1/features/write", { entity_type: "user", records: [{ entity_id: "user_123", event_time: t, features: { user_age: 34, user_lifetime_value: 1520.5 } }] });
    expect(w.body).toEqual({ written: 2 });
    const o = await api("POST", "/api/v1/features/online", { entity_id: "user_123", feature_names: ["user_age", "user_lifetime_value"] });
    expect(o.status).toBe(200);
    expect(o.body.features).toEqual({ user_age: 34, user_lifetime_value: 1520.5 });
    const b = await api("POST", "/api/v1/features/batch", { entity_ids: ["user_1", "user_2", "user_123"], feature_names: ["user_age", "user_lifetime_value"], timestamp: new Date().toISOString() });
    expect(b.status).toBe(200);
    expect(b.body.results.map((x: { features: { user_age: unknown } }) => x.features.user_age)).toEqual([null, null, 34]);
  });

  test("register FILE: conflicts and invalid definitions apply nothing; unreadable files exit 2", () => {
    const f = join(dataDir, "defs.yaml");
    writeFileSync(f, "features:\n  - {name: cli_new, version: 1, dtype: int32, entity_type: user}\n  - {name: user_age, version: 1, dtype: string, entity_type: user}\n  - {name: Bad, version: 1, dtype: int32, entity_type: user}\n");
    const r = cli(["register", f, "--tenant", "acme"], env);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("new       cli_new@1");
    expect(r.stdout).toContain("conflict  user_age@1");
    expect(r.stdout).toMatch(/invalid\s+Bad/);
    const list = cli(["register", f, "--tenant", "acme", "--dry-run"], env);
    expect(list.code).toBe(1);
    writeFileSync(f, "features: [ {name: x");
    expect(cli(["register", f, "--tenant", "acme"], env).code).toBe(2);
    expect(cli(["register", join(dataDir, "missing.yaml"), "--tenant", "acme"], env).code).toBe(2);
    expect(cli(["register", f], env).code).toBe(2);
  });

  test("CLI changes reach the running server within a second: registration and key revocation", async () => {
    const f = join(dataDir, "late.yaml");
    writeFileSync(f, "features:\n  - {name: late_feature, version: 1, dtype: int32, entity_type: user}\n");
    expect(cli(["register", f, "--tenant", "acme"], env).code).toBe(0);
    await Bun.sleep(1000);
    expect((await api("GET", "/api/v1/features/late_feature")).status).toBe(200);

    const k = cli(["keys", "create", "--tenant", "acme", "--scopes", "read"], env);
    const key = lastLine(k.stdout);
    await Bun.sleep(1000);
    expect((await api("GET", "/api/v1/features", undefined, key)).status).toBe(200);
    const id = /created key (key_[0-9a-f]+)/.exec(k.stdout)?.[1];
    expect(id).toBeDefined();
    const list = cli(["keys", "list", "--tenant", "acme"], env);
    expect(list.stdout).toContain(id as string);
    expect(list.stdout).not.toContain(key);
    expect(cli(["keys", "revoke", id as string], env).code).toBe(0);
    await Bun.sleep(1000);
    expect((await api("GET", "/api/v1/features", undefined, key)).status).toBe(401);
    expect(cli(["keys", "revoke", id as string], env).code).toBe(1);
  });

  test("seed writes realistic history with plain progress lines off a terminal", async () => {
    const r = cli(["seed", "--users", "20", "--days", "3", "--tenant", "seeded"], env);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("seed: 100%");
    expect(r.stdout).toContain("20 users");
    const key = lastLine(cli(["keys", "create", "--tenant", "seeded", "--scopes", "read"], env).stdout);
    await Bun.sleep(1000);
    const o = await api("POST", "/api/v1/features/online", { entity_ids: ["user_1", "user_20"], feature_names: ["user_age", "user_country", "user_embedding"] }, key);
    expect(o.status).toBe(200);
    for (const res of o.body.results) {
      expect(typeof res.features.user_age).toBe("number");
      expect(res.features.user_embedding).toHaveLength(16);
    }
  });

  test("every route in the live OpenAPI document rejects no key (401), a weak scope (403) and shows nothing to another tenant", async () => {
    const doc = (await api("GET", "/openapi.json", undefined, null)).body;
    // registration goes last: it gives the other tenant a user_age of its own
    const routes = Object.entries(doc.paths as Record<string, Record<string, unknown>>)
      .filter(([p]) => p.startsWith("/api/v1"))
      .sort(([a], [b]) => Number(a.endsWith("/register")) - Number(b.endsWith("/register")));
    expect(routes.length).toBeGreaterThanOrEqual(6);
    const otherAdmin = lastLine(cli(["keys", "create", "--tenant", "other", "--scopes", "admin"], env).stdout);
    const readOnly = lastLine(cli(["keys", "create", "--tenant", "acme", "--scopes", "read"], env).stdout);
    await Bun.sleep(1000);
    const bodies: Record<string, unknown> = {
      "/api/v1/features/register": { name: "user_age", version: 1, dtype: "int32", entity_type: "user" },
      "/api/v1/features/write": { entity_type: "user", records: [{ entity_id: "user_123", features: { user_age: 1 } }] },
      "/api/v1/features/online": { entity_id: "user_123", feature_names: ["user_age"] },
      "/api/v1/features/batch": { entity_ids: ["user_123"], feature_names: ["user_age"], timestamp: new Date().toISOString() },
      "/api/v1/materialize/jobs": { source: "user_stats" },
    };
    for (const [path, ops] of routes) {
      for (const method of Object.keys(ops)) {
        const concrete = path.replace("{name}", "user_age").replace("{id}", "job_x");
        const body = method === "get" ? undefined : bodies[path];
        const none = await api(method.toUpperCase(), concrete, body, null);
        expect([method, path, none.status]).toEqual([method, path, 401]);
        const responses = Object.keys((ops[method] as { responses: Record<string, unknown> }).responses);
        expect(responses).toContain("401");
        expect(responses).toContain("403");
        if (path === "/api/v1/features/register" || path === "/api/v1/features/write") {
          const weak = await api(method.toUpperCase(), concrete, body, readOnly);
          expect([path, weak.status]).toEqual([path, 403]);
        }
        const other = await api(method.toUpperCase(), concrete, body, otherAdmin);
        const expected: Record<string, number> = {
          "/api/v1/features": 200,
          "/api/v1/features/{name}": 404,
          "/api/v1/features/online": 404,
          "/api/v1/features/batch": 404,
          "/api/v1/features/write": 400,
          "/api/v1/features/register": 201,
          "/api/v1/materialize/jobs": method === "get" ? 200 : 404,
          "/api/v1/materialize/jobs/{id}": 404,
          "/api/v1/materialize/jobs/{id}/cancel": 404,
          "/api/v1/materialize/jobs/{id}/resume": 404,
        };
        expect([path, other.status]).toEqual([path, expected[path] ?? -1]);
        if (path === "/api/v1/features") expect(other.body).toEqual({ features: [] });
      }
    }
  });

  test("healthcheck subcommand", async () => {
    expect(cli(["healthcheck", base]).code).toBe(0);
    expect(cli(["healthcheck", `${base}/healthz`]).code).toBe(0);
    expect(cli(["healthcheck", `${base}/nothing-here`]).code).toBe(1);
    expect(cli(["healthcheck", "not a url"]).code).toBe(2);
    const dead = await freePort();
    expect(cli(["healthcheck", `http://127.0.0.1:${dead}`]).code).toBe(1);
  });

  test("/docs works offline: page, script and stylesheet come from the binary", async () => {
    const page = await fetch(`${base}/docs`);
    expect(page.status).toBe(200);
    const html = await page.text();
    for (const src of html.matchAll(/(?:src|href)="([^"]+)"/g)) {
      const url = src[1] as string;
      expect(url.startsWith("/")).toBe(true);
      expect((await fetch(`${base}${url}`)).status).toBe(200);
    }
  });

  test("SIGTERM: readyz turns 503 during the drain, in-flight requests finish, exit 0", async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const p = Bun.spawn([BIN, "serve", "--port", String(port), "--host", "127.0.0.1"], {
      env: { PATH: process.env.PATH ?? "", ...env, SHUTDOWN_DELAY: "1", SHUTDOWN_TIMEOUT: "5" },
      stdout: "pipe",
      stderr: "pipe",
    });
    await waitFor(`${url}/healthz`);
    expect((await fetch(`${url}/readyz`)).status).toBe(200);
    p.kill("SIGTERM");
    await Bun.sleep(200);
    const during = await fetch(`${url}/readyz`);
    expect(during.status).toBe(503);
    expect(((await during.json()) as { status: string }).status).toBe("down");
    expect(await p.exited).toBe(0);
  });
});
