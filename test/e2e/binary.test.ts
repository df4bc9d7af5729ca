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

  test("the README quick start: register (file, then a new feature over HTTP), seed, write, online, batch; metadata survives", async () => {
    const reg = cli(["register", "examples/features.yaml", "--tenant", "acme"], env);
    expect(reg.code).toBe(0);
    expect(reg.stdout).toContain("new       user_age@1");
    const again = cli(["register", "examples/features.yaml", "--tenant", "acme", "--dry-run"], env);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain("unchanged user_age@1");

    const sessions = { name: "user_sessions_7d", version: 1, dtype: "int32", entity_type: "user", ttl_hours: 24, description: "Sessions in the last 7 days", owner: "growth-team" };
    const r = await api("POST", "/api/v1/features/register", sessions);
    expect(r.status).toBe(201);
    expect(r.body.feature).toMatchObject({ ...sessions, tags: {} });
    expect((await api("POST", "/api/v1/features/register", sessions)).status).toBe(200);

    const seed = cli(["seed", "--users", "150", "--days", "30", "--tenant", "acme"], env);
    expect(seed.code).toBe(0);
    expect(seed.stdout).toMatch(/^seeded tenant acme: 8 features \(0 newly registered\), 150 users, 30 days up to \S+: \d+ new values stored, 0 already stored$/m);
    // the file's metadata is intact after seeding (seed registers only what is missing)
    const ltv = await api("GET", "/api/v1/features/user_lifetime_value");
    expect(ltv.body.versions[0]).toMatchObject({ description: "Total spend of the user so far, USD", owner: "growth-team", tags: { pii: "false", source: "orders" } });
    const premium = await api("GET", "/api/v1/features/user_is_premium");
    expect(premium.body.versions[0]).toMatchObject({ description: null, owner: null, tags: {} });

    const w = await api("POST", "/api/v1/features/write", { entity_type: "user", records: [{ entity_id: "user_123", features: { user_age: 34, user_lifetime_value: 1520.5, user_sessions_7d: 12 } }] });
    expect(w.body).toEqual({ written: 3 });
    const o = await api("POST", "/api/v1/features/online", { entity_id: "user_123", feature_names: ["user_age", "user_lifetime_value", "user_sessions_7d"] });
    expect(o.status).toBe(200);
    expect(o.body.features).toEqual({ user_age: 34, user_lifetime_value: 1520.5, user_sessions_7d: 12 });
    const written = o.body.metadata.user_age.event_time;
    expect(Object.values(o.body.metadata)).toEqual([0, 1, 2].map(() => ({ status: "present", event_time: written })));
    await Bun.sleep(5);
    const b = await api("POST", "/api/v1/features/batch", { entity_ids: ["user_1", "user_2", "user_123"], feature_names: ["user_age", "user_lifetime_value"], timestamp: new Date().toISOString() });
    expect(b.status).toBe(200);
    const [u1, u2, u123] = b.body.results;
    for (const u of [u1, u2]) {
      expect(typeof u.features.user_age).toBe("number");
      expect(typeof u.features.user_lifetime_value).toBe("number");
    }
    expect(u123.features).toEqual({ user_age: 34, user_lifetime_value: 1520.5 });
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
    expect(r.stderr).toContain("seed: 100% (20/20 users)");
    expect(r.stdout).toContain("8 features (8 newly registered), 20 users");
    const key = lastLine(cli(["keys", "create", "--tenant", "seeded", "--scopes", "read"], env).stdout);
    await Bun.sleep(1000);
    const o = await api("POST", "/api/v1/features/online", { entity_ids: ["user_1", "user_20"], feature_names: ["user_age", "user_country", "user_embedding"] }, key);
    expect(o.status).toBe(200);
    for (const res of o.body.results) {
      expect(typeof res.features.user_age).toBe("number");
      expect(res.features.user_embedding).toHaveLength(16);
    }
    const defs = await api("GET", "/api/v1/features/user_age", undefined, key);
    expect(defs.body.versions[0]).toMatchObject({ owner: "seed", description: "Age of the user in years" });
  });

  test("seed: history on a daily grid ending at the moment of seeding; progress lines labelled right; a re-seed reports what it stored", async () => {
    const USERS = 150;
    const DAYS = 30;
    const DAY = 86_400_000;
    const first = cli(["seed", "--users", String(USERS), "--days", String(DAYS), "--tenant", "grid"], env);
    expect(first.code).toBe(0);
    // progress: one line per tenth passed, each percentage that of the users it names
    const lines = first.stderr.trim().split("\n");
    expect(lines.length).toBeGreaterThan(1);
    for (const line of lines) {
      const m = /^seed: (\d+)% \((\d+)\/(\d+) users\)$/.exec(line);
      expect(m, line).not.toBeNull();
      expect([line, Number(m?.[1])]).toEqual([line, Math.floor((Number(m?.[2]) * 100) / USERS)]);
      expect(Number(m?.[3])).toBe(USERS);
    }
    expect(lines.at(-1)).toBe(`seed: 100% (${USERS}/${USERS} users)`);
    const summary = /up to (\S+): (\d+) new values stored, (\d+) already stored$/m;
    const m1 = summary.exec(first.stdout);
    expect(m1).not.toBeNull();
    const seededAt = Date.parse(m1?.[1] ?? "");
    const stored1 = Number(m1?.[2]);
    expect(Number(m1?.[3])).toBe(0);

    const key = lastLine(cli(["keys", "create", "--tenant", "grid", "--scopes", "read"], env).stdout);
    await Bun.sleep(1000);
    const ids = Array.from({ length: USERS }, (_, i) => `user_${i + 1}`);
    const daily = ["user_lifetime_value", "user_is_premium", "user_orders_30d", "user_avg_order_value", "user_last_login"];
    const o = await api("POST", "/api/v1/features/online", { entity_ids: ids, feature_names: ["user_age", ...daily] }, key);
    expect(o.status).toBe(200);
    const latest = new Map<string, number>();
    for (const res of o.body.results) {
      const times = Object.fromEntries(Object.entries(res.metadata as Record<string, { status: string; event_time: string }>).map(([f, m]) => [f, Date.parse(m.event_time)]));
      for (const f of daily) {
        expect([res.entity_id, f, res.metadata[f].status]).toEqual([res.entity_id, f, "present"]);
        // nothing after the moment of seeding, so nothing a "now" write would lose to
        expect([res.entity_id, f, times[f]! <= seededAt]).toEqual([res.entity_id, f, true]);
      }
      const last = times.user_lifetime_value!;
      latest.set(res.entity_id, last);
      // the newest point is the last one at or before the seeding: less than a day old
      expect(seededAt - last).toBeLessThan(DAY);
      // the grid: the first value (user_age) is DAYS - 1 days before today at the same time of day
      const age = times.user_age!;
      expect([res.entity_id, (last - age) % DAY]).toEqual([res.entity_id, 0]);
      expect([res.entity_id, Math.floor(age / DAY)]).toEqual([res.entity_id, Math.floor(seededAt / DAY) - (DAYS - 1)]);
    }

    const second = cli(["seed", "--users", String(USERS), "--days", String(DAYS), "--tenant", "grid"], env);
    expect(second.code).toBe(0);
    expect(second.stdout).toContain("8 features (0 newly registered)");
    const m2 = summary.exec(second.stdout);
    const reseededAt = Date.parse(m2?.[1] ?? "");
    if (Math.floor(reseededAt / DAY) === Math.floor(seededAt / DAY)) {
      // the same day: everything stored before is re-sent identically and stored nothing new,
      // but for the users whose point of today came between the two runs
      expect(Number(m2?.[3])).toBe(stored1);
      const came = [...latest.values()].filter((t) => t + DAY > seededAt && t + DAY <= reseededAt).length;
      if (came === 0) expect(Number(m2?.[2])).toBe(0);
      else expect(Number(m2?.[2])).toBeGreaterThan(0);
    }
  });

  test("seed refuses existing definitions its values would not fit, and writes nothing", async () => {
    const f = join(dataDir, "clash.yaml");
    writeFileSync(f, "features:\n  - {name: user_age, version: 1, dtype: int64, entity_type: user, owner: me}\n");
    expect(cli(["register", f, "--tenant", "clash"], env).code).toBe(0);
    const r = cli(["seed", "--users", "2", "--days", "2", "--tenant", "clash"], env);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toContain("tenant clash already has different definitions: user_age@1 is int64/user/ttl none, seed needs int32/user/ttl none");
    expect(r.stdout).toBe("");
  });

  test("MAX_FUTURE_SKEW: a far-future event time is a 400 naming the record; a bad setting is one line naming it, exit 2", async () => {
    const r = await api("POST", "/api/v1/features/write", { entity_type: "user", records: [
      { entity_id: "skew", features: { user_age: 1 } },
      { entity_id: "skew", event_time: "9999-12-31T23:59:59Z", features: { user_age: 2 } },
    ] });
    expect(r.status).toBe(400);
    expect(r.headers.get("content-type")).toContain("application/problem+json");
    expect(r.body.errors).toEqual([{ path: "records[1].event_time", message: expect.stringContaining("more than MAX_FUTURE_SKEW (300 s) ahead of the server clock") }]);
    const o = await api("POST", "/api/v1/features/online", { entity_id: "skew", feature_names: ["user_age"] });
    expect(o.body.metadata.user_age.status).toBe("not_found");
    const bad = cli(["migrate"], { DATA_DIR: dataDir, MAX_FUTURE_SKEW: "soon" });
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim().split("\n")).toHaveLength(1);
    expect(bad.stderr).toContain("MAX_FUTURE_SKEW: expected a duration such as 30s, 5m, 1h or 1d");
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
      "/api/v1/feature-views/register": { name: "user_stats", version: 1, entity_type: "user", features: ["user_age"] },
      "/api/v1/feature-services/register": { name: "user_model", version: 1, features: ["user_age"] },
      "/api/v1/feast/get-online-features": { entities: { user: ["user_123"] }, features: ["user_age"] },
      "/api/v1/feast/write-to-online-store": { feature_view_name: "user_stats", df: { user: ["user_123"], user_age: [1] } },
      "/api/v1/feast/push": { push_source_name: "user_push", df: { user: ["user_123"], user_age: [1] } },
    };
    const writes = ["/api/v1/features/register", "/api/v1/features/write", "/api/v1/feature-views/register", "/api/v1/feature-services/register", "/api/v1/feast/write-to-online-store", "/api/v1/feast/push"];
    for (const [path, ops] of routes) {
      for (const method of Object.keys(ops)) {
        const concrete = path.replace("{name}", "user_age").replace("{id}", "job_x");
        const body = method === "get" ? undefined : bodies[path];
        const none = await api(method.toUpperCase(), concrete, body, null);
        expect([method, path, none.status]).toEqual([method, path, 401]);
        const responses = Object.keys((ops[method] as { responses: Record<string, unknown> }).responses);
        expect(responses).toContain("401");
        expect(responses).toContain("403");
        if (writes.includes(path)) {
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
          "/api/v1/feature-views": 200,
          "/api/v1/feature-views/{name}": 404,
          "/api/v1/feature-views/register": 201,
          "/api/v1/feature-services": 200,
          "/api/v1/feature-services/{name}": 404,
          "/api/v1/feature-services/register": 201,
          "/api/v1/feast/get-online-features": 404,
          "/api/v1/feast/write-to-online-store": 404,
          "/api/v1/feast/push": 404,
          "/api/v1/feast/health": 200,
        };
        expect([path, other.status]).toEqual([path, expected[path] ?? -1]);
        if (path === "/api/v1/features") expect(other.body).toEqual({ features: [] });
        if (path === "/api/v1/feature-views") expect(other.body).toEqual({ feature_views: [] });
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
