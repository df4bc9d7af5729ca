/**
 * API keys under attack, on the compiled binary: every failed authentication looks the same
 * whether the key exists (revoked, expired) or not; no key material reaches the logs (at
 * LOG_LEVEL=debug), error bodies or metrics; expired keys are refused; and a revoked or expired
 * key stops working on every server sharing one PostgreSQL.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startPostgres, type PgService } from "../harness/services.ts";
import { cli, createKey, figure, post, requireBinary, Server, until } from "./support.ts";

requireBinary();

const LIST = "/api/v1/features";
const O = "/api/v1/features/online";
const W = "/api/v1/features/write";

function get(base: string, path: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${base}${path}`, { headers, signal: AbortSignal.timeout(10_000) });
}

/** Status, headers (minus per-request ones) and body (minus request_id) of a response. */
async function shape(res: Response): Promise<unknown> {
  const headers = [...res.headers.entries()].filter(([k]) => !["x-request-id", "date"].includes(k)).sort();
  const body = (await res.json()) as Record<string, unknown>;
  expect(typeof body.request_id).toBe("string");
  const { request_id: _, ...rest } = body;
  return { status: res.status, headers, body: rest };
}

describe("keys on the embedded binary (LOG_LEVEL=debug)", () => {
  let dir: string;
  let env: Record<string, string>;
  let server: Server;
  const secrets: { label: string; key: string }[] = [];
  const cliOutput: string[] = [];
  let admin: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "fs-keys-"));
    env = { DATA_DIR: dir, LOG_LEVEL: "debug" };
    server = await Server.start({ ...env, RATE_LIMIT_PER_KEY: "40", RATE_LIMIT_WINDOW_MS: "60000", SHUTDOWN_TIMEOUT: "2" });
    const add = (label: string, scopes: string, extra: string[] = []) => {
      const k = createKey(env, "acme", scopes, extra);
      cliOutput.push(k.stderr);
      secrets.push({ label, key: k.key });
      return k;
    };
    admin = add("admin", "admin").key;
    add("read", "read");
    const revoked = add("revoked", "read");
    const r = cli(["keys", "revoke", revoked.id], env);
    cliOutput.push(r.stderr, cli(["keys", "list"], env).stdout, cli(["keys", "list"], env).stderr);
    expect(r.code).toBe(0);
    add("expired", "read", ["--expires-in", "1s"]);
    // a registration by another process makes the server log at debug level (registry reloaded)
    const reg = cli(["register", "examples/features.yaml", "--tenant", "acme"], env);
    expect(reg.code).toBe(0);
    cliOutput.push(reg.stdout, reg.stderr);
    await until("keys to reach the server", async () => (await get(server.base, LIST, { "x-api-key": admin })).status === 200, 10_000);
    await Bun.sleep(1100); // the 1 s key has expired
  }, 60_000);

  afterAll(async () => {
    await server?.stop("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });

  test("an expired key is refused", async () => {
    const expired = secrets.find((s) => s.label === "expired")?.key as string;
    expect((await get(server.base, LIST, { "x-api-key": expired })).status).toBe(401);
    expect((await get(server.base, LIST, { authorization: `Bearer ${expired}` })).status).toBe(401);
  });

  test("failed authentication is identical whether the key exists or not", async () => {
    const known = (label: string) => secrets.find((s) => s.label === label)?.key as string;
    const unknown = `fs_${Buffer.alloc(32, 1).toString("base64url")}`; // well-formed, never issued
    const tweaked = `${admin.slice(0, -1)}${admin.endsWith("A") ? "B" : "A"}`; // one character off a real key
    const variants: [string, Record<string, string>][] = [
      ["no key", {}],
      ["unknown key", { "x-api-key": unknown }],
      ["one character off", { "x-api-key": tweaked }],
      ["revoked key", { "x-api-key": known("revoked") }],
      ["expired key", { "x-api-key": known("expired") }],
      ["revoked bearer", { authorization: `Bearer ${known("revoked")}` }],
      ["expired bearer", { authorization: `Bearer ${known("expired")}` }],
      ["unknown bearer", { authorization: `Bearer ${unknown}` }],
      ["not a key", { "x-api-key": "hello" }],
      ["basic auth", { authorization: `Basic ${btoa(`acme:${admin}`)}` }],
    ];
    for (const [path, method] of [
      [LIST, "GET"],
      [O, "POST"],
      [W, "POST"],
    ] as const) {
      const shapes: [string, unknown][] = [];
      for (const [label, headers] of variants) {
        const res = await fetch(`${server.base}${path}`, {
          method,
          headers: { ...headers, "content-type": "application/json" },
          ...(method === "POST" ? { body: JSON.stringify({ entity_id: "u", feature_names: ["x"] }) } : {}),
        });
        shapes.push([label, await shape(res)]);
      }
      const [, first] = shapes[0] as [string, { status: number }];
      expect(first.status).toBe(401);
      for (const [label, s] of shapes) expect([path, label, s]).toEqual([path, label, first]);
    }
  });

  test("over its rate limit a key gets 429 with Retry-After", async () => {
    const { key } = createKey(env, "limited", "read");
    secrets.push({ label: "limited", key });
    await until("the new key", async () => (await get(server.base, LIST, { "x-api-key": key })).status === 200, 10_000);
    const statuses: number[] = [];
    let retryAfter: string | null = null;
    for (let i = 0; i < 45; i++) {
      const r = await get(server.base, LIST, { "x-api-key": key });
      statuses.push(r.status);
      if (r.status === 429) {
        retryAfter = r.headers.get("retry-after");
        expect(((await r.json()) as { code: string }).code).toBe("rate_limited");
      } else await r.arrayBuffer();
    }
    expect(statuses.filter((s) => s === 200).length).toBe(39); // 40 per window, one used above
    expect(statuses.at(-1)).toBe(429);
    expect(retryAfter).toMatch(/^[1-9]\d*$/);
  }, 30_000);

  test("no key material in logs, error bodies or metrics", async () => {
    const bodies: string[] = [];
    const read = secrets.find((s) => s.label === "read")?.key as string;
    // keys in every place a careless client might put them; errors of every kind
    const tries: Promise<Response>[] = [
      get(server.base, `${LIST}?api_key=${encodeURIComponent(read)}`, { "x-api-key": admin }),
      get(server.base, `${LIST}/${encodeURIComponent(read)}`, { "x-api-key": admin }),
      get(server.base, `${LIST}?entity_type=${encodeURIComponent(read)}`, { "x-api-key": admin }),
      post(server.base, O, { entity_id: "u", feature_names: [read] }, admin),
      post(server.base, O, "{not json", admin),
      post(server.base, W, { entity_type: "user", records: [{ entity_id: "u", features: { nope: 1 } }] }, admin),
      post(server.base, O, { entity_id: "u", feature_names: ["x"] }, `${admin}x`),
      fetch(`${server.base}${O}`, { method: "POST", headers: { authorization: `Bearer ${read}`, "content-type": "application/json" }, body: "[]" }),
      fetch(`${server.base}/api/v1/nothing`, { headers: { "x-api-key": admin } }),
      fetch(`${server.base}${LIST}`, { method: "DELETE", headers: { "x-api-key": admin } }),
    ];
    for (const r of await Promise.all(tries)) bodies.push(`${r.status} ${[...r.headers.entries()].join(" ")} ${await r.text()}`);
    const metrics = await (await get(server.base, "/metrics")).text();
    await server.stop("SIGTERM");
    const logs = server.output;
    expect(logs).toContain('"level":"debug"'); // the run really logged at debug level
    expect(await server.proc.exited).toBe(0);
    expect(logs.split("\n").filter((l) => l.includes('"msg":"request"')).length).toBeGreaterThan(50);
    for (const { label, key } of secrets) {
      const hash = createHash("sha256").update(key).digest("hex");
      const secretPart = key.slice(7); // the stored, shown prefix is `fs_` + 4 characters
      for (const [where, text] of [
        ["server log", logs],
        ["metrics", metrics],
        ["CLI stderr and key listings", cliOutput.join("\n")],
      ] as const) {
        expect([label, where, text.includes(secretPart)]).toEqual([label, where, false]);
        expect([label, where, "hash", text.includes(hash)]).toEqual([label, where, "hash", false]);
      }
      // error bodies never echo the presented key back from the headers
      const fromHeaders = label === "admin" ? bodies.filter((b) => !b.startsWith("200")) : [];
      for (const b of fromHeaders) expect([label, b.includes(secretPart)]).toEqual([label, false]);
    }
    figure("log lines checked for key material (LOG_LEVEL=debug)", logs.split("\n").length);
    // the database holds only hashes
    const files = readdirSync(dir).filter((f) => /\.(db|sqlite)(-wal)?$/.test(f));
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) {
      const db = readFileSync(join(dir, f), "latin1");
      for (const { key } of secrets) expect([f, db.includes(key.slice(7))]).toEqual([f, false]);
    }
  }, 60_000);
});

describe("revocation and expiry reach every server on one PostgreSQL", () => {
  let pg: PgService;
  let env: Record<string, string>;
  let servers: Server[] = [];

  beforeAll(async () => {
    pg = await startPostgres();
    env = { POSTGRES_URL: await pg.createDatabase(), LOG_LEVEL: "warn" };
    expect(cli(["migrate"], env).code).toBe(0);
    servers = await Promise.all([Server.start(env), Server.start(env)]);
  }, 120_000);

  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop("SIGKILL")));
    await pg?.stop();
  }, 60_000);

  const status = async (s: Server, key: string) => (await get(s.base, LIST, { "x-api-key": key })).status;

  test("a revoked key stops working on both servers", async () => {
    const times: number[] = [];
    for (let round = 0; round < 3; round++) {
      const { key, id } = createKey(env, "fleet", "read");
      for (const s of servers) await until("the key on every server", async () => (await status(s, key)) === 200, 10_000);
      const revoked = cli(["keys", "revoke", id], env);
      expect(revoked.code).toBe(0);
      const t0 = performance.now();
      await Promise.all(servers.map((s) => until("revocation on every server", async () => (await status(s, key)) === 401, 10_000, 20)));
      times.push(Math.round(performance.now() - t0));
      // and it stays revoked
      for (const s of servers) expect(await status(s, key)).toBe(401);
    }
    figure("revocation visible on both servers after (ms, 3 rounds, CLI exit to 401)", times);
  }, 60_000);

  test("an expiring key works until it expires, then stops on both servers", async () => {
    const { key, stdout } = createKey(env, "fleet", "read", ["--expires-in", "3s"]);
    const expiresAt = Date.parse(/expires (\S+)/.exec(stdout)?.[1] ?? "");
    expect(Number.isFinite(expiresAt)).toBe(true);
    for (const s of servers) await until("the key on every server", async () => (await status(s, key)) === 200, 10_000);
    await Promise.all(servers.map((s) => until("expiry on every server", async () => (await status(s, key)) === 401, 20_000, 20)));
    const lag = Date.now() - expiresAt;
    figure("expired key refused on both servers, ms after its expiry time", Math.max(0, lag));
    for (const s of servers) expect(await status(s, key)).toBe(401);
  }, 60_000);
});
