/**
 * Per-key rate limiting (the sliding window itself is in test/unit/rate-limit.test.ts): the 429 problem with
 * Retry-After, per-key isolation, off by default, one limit shared by two servers through
 * Redis (single node and cluster), and failing open (to per-process counts) while Redis is down.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../../src/config.ts";
import { createLogger } from "../../src/log.ts";
import { openRateLimiter } from "../../src/serving/rate-limit.ts";
import { startRedis, startRedisCluster, type RedisClusterService, type RedisService } from "../harness/services.ts";
import { addKey, createKey, figure, openApp, requireBinary, Server, until, type InProcessApp } from "./support.ts";

const O = "/api/v1/features/online";
const LIST = "/api/v1/features";
const silent = createLogger("silent", 2);

describe("rate limiting over HTTP", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "fs-rl-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("off by default: no 429 and no RateLimit headers", async () => {
    const a = await openApp({ DATA_DIR: join(dir, "default") });
    try {
      expect(a.deps.config.RATE_LIMIT_PER_KEY).toBe(0);
      const { key } = await addKey(a, "t");
      const statuses = await Promise.all(Array.from({ length: 300 }, () => a.call("GET", LIST, undefined, key).then((r) => r.status)));
      expect(new Set(statuses)).toEqual(new Set([200]));
      const r = await a.call("GET", LIST, undefined, key);
      expect(r.headers.get("ratelimit-limit")).toBeNull();
    } finally {
      await a.close();
    }
  });

  test("over the limit: 429 rate_limited problem with Retry-After, per key, counted in metrics", async () => {
    const a = await openApp({ DATA_DIR: join(dir, "limited"), RATE_LIMIT_PER_KEY: "5", RATE_LIMIT_WINDOW_MS: "60000" });
    try {
      const k1 = await addKey(a, "t1", ["read"]);
      const k2 = await addKey(a, "t1", ["read"]);
      const statuses: number[] = [];
      let last: Response | undefined;
      for (let i = 0; i < 8; i++) {
        last = await a.call("GET", LIST, undefined, k1.key);
        statuses.push(last.status);
        if (last.status === 200) expect(Number(last.headers.get("ratelimit-remaining"))).toBe(4 - i);
      }
      expect(statuses).toEqual([200, 200, 200, 200, 200, 429, 429, 429]);
      const res = last as Response;
      expect(res.headers.get("content-type")).toContain("application/problem+json");
      const retry = res.headers.get("retry-after");
      expect(retry).toMatch(/^[1-9]\d*$/);
      expect(res.headers.get("ratelimit-limit")).toBe("5");
      expect(res.headers.get("ratelimit-remaining")).toBe("0");
      const body = (await res.json()) as Record<string, unknown>;
      expect(body).toMatchObject({ status: 429, code: "rate_limited", type: "urn:feature-store:problem:rate_limited" });
      expect(typeof body.request_id).toBe("string");
      expect(String(body.detail)).not.toContain(k1.key);
      // every route is limited, including bad requests (they cost too)
      expect((await a.call("POST", O, { nope: 1 }, k1.key)).status).toBe(429);
      // the other key of the same tenant has its own budget; no key is never limited (401)
      expect((await a.call("GET", LIST, undefined, k2.key)).status).toBe(200);
      for (let i = 0; i < 20; i++) expect((await a.call("GET", LIST, undefined, "fs_wrong")).status).toBe(401);
      const metrics = await (await a.app.request("/metrics")).text();
      expect(metrics).toMatch(/feature_store_rate_limited_total 4\b/);
      expect(metrics).toMatch(/feature_store_http_requests_total\{route="\/api\/v1\/features",method="GET",status="429"\} 3/);
      expect(metrics).not.toContain(k1.key);
      expect(metrics).not.toContain(k1.id);
    } finally {
      await a.close();
    }
  });

  test("the OpenAPI document lists 429 (with Retry-After) on every API operation", async () => {
    const a = await openApp({ DATA_DIR: join(dir, "doc") });
    try {
      const doc = (await (await a.app.request("/openapi.json")).json()) as { paths: Record<string, Record<string, { responses: Record<string, { headers?: Record<string, unknown> }> }>> };
      for (const [path, ops] of Object.entries(doc.paths)) {
        if (!path.startsWith("/api/v1")) continue;
        for (const [method, op] of Object.entries(ops)) {
          expect([path, method, Object.keys(op.responses)]).toEqual([path, method, expect.arrayContaining(["429", "503"])]);
          expect(op.responses["429"]?.headers?.["Retry-After"]).toBeDefined();
          expect(op.responses["503"]?.headers?.["Retry-After"]).toBeDefined();
        }
      }
    } finally {
      await a.close();
    }
  });
});

for (const kind of ["redis", "redis-cluster"] as const) {
  describe(`one limit for the fleet, counted in ${kind}`, () => {
    let redis: RedisService | undefined;
    let cluster: RedisClusterService | undefined;
    let url: string;
    let dir: string;
    let a: InProcessApp;
    let b: InProcessApp;

    beforeAll(async () => {
      if (kind === "redis") {
        redis = await startRedis();
        url = redis.url;
      } else {
        cluster = await startRedisCluster();
        url = cluster.urls.join(",");
      }
      dir = mkdtempSync(join(tmpdir(), "fs-rl-shared-"));
      // Two servers: two apps on one database, each with its own connection to the shared counts.
      const env = { DATA_DIR: dir, RATE_LIMIT_PER_KEY: "10", RATE_LIMIT_WINDOW_MS: "60000", REDIS_URL: url, REDIS_CLUSTER: kind === "redis-cluster" ? "true" : "false" };
      const { REDIS_URL: _r, REDIS_CLUSTER: _c, ...appEnv } = env;
      for (const app of ["a", "b"]) {
        const rl = await openRateLimiter(loadConfig(env), silent);
        // connected once a check went through Redis (until then it counts in process)
        await until(`limiter ${app} on ${kind}`, async () => {
          await rl.check(`probe-${app}`);
          return rl.sharedActive;
        }, 30_000);
        if (app === "a") a = await openApp(appEnv, { rateLimiter: rl });
        else b = await openApp(appEnv, { rateLimiter: rl });
      }
    }, 120_000);

    afterAll(async () => {
      await a?.close();
      await b?.close();
      await redis?.stop();
      await cluster?.stop();
      rmSync(dir, { recursive: true, force: true });
    }, 60_000);

    test("two servers share one budget per key", async () => {
      const { key } = await addKey(a, "fleet", ["read"]);
      await b.deps.keys.reload();
      const statuses: number[] = [];
      for (let i = 0; i < 8; i++) {
        statuses.push((await a.call("GET", LIST, undefined, key)).status);
        statuses.push((await b.call("GET", LIST, undefined, key)).status);
      }
      // 10 allowed in all (not 10 per server), the rest refused, whichever server answered
      expect(statuses.filter((s) => s === 200)).toHaveLength(10);
      expect(statuses.filter((s) => s === 429)).toHaveLength(6);
      expect(statuses.slice(0, 10).every((s) => s === 200)).toBe(true);
    });

    if (kind === "redis") {
      // `serve` builds the Redis-backed limiter, so a fleet shares one budget per key.
      test("two `serve` binaries on one Redis share one budget per key", async () => {
        requireBinary();
        const binEnv = { DATA_DIR: dir, REDIS_URL: url, LOG_LEVEL: "warn", RATE_LIMIT_PER_KEY: "10", RATE_LIMIT_WINDOW_MS: "60000" };
        const { key } = createKey(binEnv, "fleet_bin", "read");
        const servers = await Promise.all([Server.start(binEnv), Server.start(binEnv)]);
        try {
          const statuses: number[] = [];
          for (let i = 0; i < 8; i++) {
            for (const s of servers) statuses.push((await fetch(`${s.base}/api/v1/features`, { headers: { "x-api-key": key } })).status);
          }
          expect(statuses.filter((x) => x === 200)).toHaveLength(10);
        } finally {
          await Promise.all(servers.map((s) => s.stop("SIGKILL")));
        }
      }, 60_000);

      test("Redis down: fails open to per-process counts (never a 5xx), shared again once it is back", async () => {
        const rl = await openRateLimiter(loadConfig({ RATE_LIMIT_PER_KEY: "3", RATE_LIMIT_WINDOW_MS: "60000", REDIS_URL: url }), silent);
        const c = await openApp({ DATA_DIR: dir }, { rateLimiter: rl });
        try {
          const { key } = await addKey(c, "failopen", ["read"]);
          await until("the limiter to use Redis", async () => (await rl.check("probe")).allowed && rl.sharedActive, 20_000);
          expect((await c.call("GET", LIST, undefined, key)).status).toBe(200);
          expect((await c.call("GET", LIST, undefined, key)).status).toBe(200);
          await redis?.stopServer({ hard: true });
          const t0 = performance.now();
          const during: number[] = [];
          for (let i = 0; i < 6; i++) during.push((await c.call("GET", LIST, undefined, key)).status);
          figure("rate limit: 6 requests while Redis is down took (ms)", Math.round(performance.now() - t0));
          // open: requests go through (counted here: 3 allowed in this window), never 5xx
          expect(during.every((s) => s === 200 || s === 429)).toBe(true);
          expect(during.slice(0, 3)).toEqual([200, 200, 200]);
          expect(rl.sharedActive).toBe(false);
          await redis?.startServer();
          await until("the limiter to use Redis again", async () => {
            await rl.check("probe");
            return rl.sharedActive;
          }, 20_000);
        } finally {
          await c.close();
        }
      }, 60_000);
    }
  });
}
