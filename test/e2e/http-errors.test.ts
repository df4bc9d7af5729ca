/**
 * What a new user trips over on the HTTP side (issue 10), on the compiled binary as it is
 * served: a key made by `keys create` works on the very next request; a body over
 * BODY_LIMIT_BYTES gets the same 413 problem whether it is sent with a Content-Length or
 * chunked; `/`, `/docs/` and unknown paths under `/docs` answer what a person expects.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cli, createKey, requireBinary, Server, until } from "../reliability/support.ts";

requireBinary();

const LIMIT = 1000;
const O = "/api/v1/features/online";

async function problem(res: Response, status: number, code: string): Promise<Record<string, unknown>> {
  const text = await res.text();
  expect([res.status, res.headers.get("content-type")]).toEqual([status, "application/problem+json"]);
  const body = JSON.parse(text) as Record<string, unknown>;
  expect([body.status, body.code]).toEqual([status, code]);
  expect(typeof body.detail).toBe("string");
  return body;
}

describe(`the binary (embedded, BODY_LIMIT_BYTES=${LIMIT})`, () => {
  let dir: string;
  let env: Record<string, string>;
  let server: Server;
  let admin: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "fs-http-errors-"));
    env = { DATA_DIR: dir, LOG_LEVEL: "warn" };
    server = await Server.start({ ...env, BODY_LIMIT_BYTES: String(LIMIT), SHUTDOWN_TIMEOUT: "2" });
    admin = createKey(env, "acme", "admin").key;
  }, 60_000);

  afterAll(async () => {
    await server?.stop("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });

  const get = (path: string, headers: Record<string, string> = {}) => fetch(`${server.base}${path}`, { headers, redirect: "manual" });

  test("a key from `keys create` works on the very next request (no wait for the change feed)", async () => {
    for (let i = 0; i < 3; i++) {
      const { key } = createKey(env, `fresh${i}`, "read");
      const res = await get("/api/v1/features", { "x-api-key": key });
      expect([i, res.status, await res.json()]).toEqual([i, 200, { features: [] }]);
    }
  });

  test("a revoked key stays refused after lookups of unknown keys (the lookup never brings it back)", async () => {
    const { key, id } = createKey(env, "acme", "read");
    expect((await get("/api/v1/features", { "x-api-key": key })).status).toBe(200);
    expect(cli(["keys", "revoke", id], env).code).toBe(0);
    await until("the revocation", async () => (await get("/api/v1/features", { "x-api-key": key })).status === 401, 10_000, 20);
    // well-formed keys the server does not know make it read the keys from the database
    for (let i = 0; i < 3; i++) {
      const stranger = `fs_${Buffer.alloc(32, i + 7).toString("base64url")}`;
      await problem(await get("/api/v1/features", { "x-api-key": stranger }), 401, "unauthenticated");
      await problem(await get("/api/v1/features", { "x-api-key": key }), 401, "unauthenticated");
    }
  });

  test("a body over the limit with a Content-Length gets the same 413 problem as a chunked one", async () => {
    const chunked = (size: number) =>
      new ReadableStream<Uint8Array>({
        start(ctl) {
          for (let sent = 0; sent < size; sent += 1000) ctl.enqueue(new Uint8Array(Math.min(1000, size - sent)).fill(32));
          ctl.close();
        },
      });
    const details: string[] = [];
    // just over the limit, well over it, and far over it (the binary used to answer those with a bare 413)
    for (const size of [LIMIT + 1, 200_000, 3_000_000]) {
      const body = new Uint8Array(size).fill(32);
      const res = await fetch(`${server.base}${O}`, { method: "POST", headers: { "x-api-key": admin, "content-type": "application/json" }, body });
      details.push(String((await problem(res, 413, "payload_too_large")).detail));
      const streamed = await fetch(`${server.base}${O}`, { method: "POST", headers: { "x-api-key": admin, "content-type": "application/json" }, body: chunked(size) });
      details.push(String((await problem(streamed, 413, "payload_too_large")).detail));
    }
    expect(new Set(details)).toEqual(new Set([`request body is over the ${LIMIT}-byte limit`]));
    // at the limit it is read (and judged on its content)
    const ok = await fetch(`${server.base}${O}`, { method: "POST", headers: { "x-api-key": admin, "content-type": "application/json" }, body: JSON.stringify({ entity_id: "u", feature_names: ["x"] }).padEnd(LIMIT, " ") });
    await problem(ok, 404, "not_found");
    // the connection is still usable
    expect((await get("/healthz")).status).toBe(200);
  });

  test("a request line and headers over 16 KiB get the HTTP layer's 431, which the document lists on every operation", async () => {
    const long = "a".repeat(20_000);
    const res = await fetch(`${server.base}/api/v1/features/batch?x=${long}`, { method: "POST", headers: { "x-api-key": admin }, body: "{}" });
    expect(res.status).toBe(431);
    await res.arrayBuffer();
    const header = await fetch(`${server.base}/healthz`, { headers: { "x-long": long } });
    expect(header.status).toBe(431);
    await header.arrayBuffer();
    const doc = (await (await get("/openapi.json")).json()) as { paths: Record<string, Record<string, { responses: Record<string, unknown> }>> };
    const missing = Object.entries(doc.paths).flatMap(([path, item]) => Object.entries(item).filter(([, op]) => !op.responses["431"]).map(([m]) => `${m} ${path}`));
    expect(missing).toEqual([]);
    expect((await get("/healthz")).status).toBe(200);
  });

  test("GET / points at the docs; /docs/ sends you to /docs; unknown paths are 404, not 405", async () => {
    const root = await get("/");
    expect(root.status).toBe(200);
    expect(await root.json()).toMatchObject({ name: "feature-store", docs: "/docs", openapi: "/openapi.json", health: "/healthz", ready: "/readyz", metrics: "/metrics" });
    const slash = await get("/docs/");
    expect([slash.status, slash.headers.get("location")]).toEqual([301, "/docs"]);
    const page = await get("/docs");
    expect([page.status, page.headers.get("content-type")]).toEqual([200, "text/html; charset=UTF-8"]);
    expect(await page.text()).toContain("/docs/swagger-ui-bundle.js");
    expect((await get("/docs/swagger-ui.css")).status).toBe(200);
    for (const path of ["/docs/anything", "/docs/anything/else", "/docs/index.html", "/nothing", "/healthz/"]) {
      const body = await problem(await get(path), 404, "not_found");
      expect([path, String(body.detail).includes(path)]).toEqual([path, true]);
    }
    // a routed method on a path with a trailing slash is not a "method not allowed"
    await problem(await get("/api/v1/features/", { "x-api-key": admin }), 404, "not_found");
    // another method on a known path still is
    const post = await fetch(`${server.base}/docs`, { method: "POST" });
    expect([post.status, post.headers.get("allow")]).toEqual([405, "GET, HEAD"]);
    await post.arrayBuffer();
  });
});
