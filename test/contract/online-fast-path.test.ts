/**
 * The online fast path (src/api/fast-online.ts) answers exactly as the Hono route did: one
 * corpus of requests (valid bodies of every form, bad JSON, bad UTF-8, schema errors, unknown
 * features, a tenant with nothing registered, no key, unknown key, keys of every scope, Bearer
 * keys, request ids kept and replaced, an oversize body, other content types,
 * query strings, /healthz, the rate limit, admission control, the drain) goes through an app
 * with the fast path and one without it (`fastPath: false`, every request through the
 * middleware chain), on the same database; status, every header and the body must be equal
 * (a generated request id is compared by shape), and so must the request metrics each app
 * counted (same route, method and status labels).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createApp, type ServerState } from "../../src/app.ts";
import { Admission } from "../../src/api/middleware/shed.ts";
import { fastPathTaken } from "../../src/api/fast-online.ts";
import { laneForms } from "../../src/api/routes/lane-forms.ts";
import { BulkLane, laneOptions } from "../../src/lane/pool.ts";
import { generateKey, type Scope } from "../../src/serving/keys.ts";
import type { Deps } from "../../src/serving/deps.ts";
import { closeDeps } from "../../src/cmd/common.ts";
import { contractBackends, openTestDeps, TestServer } from "../support/backends.ts";

const O = "/api/v1/features/online";
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

interface Req {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
}

/** A response reduced to what a client sees: status, headers (a generated request id by shape), body (likewise). */
async function seen(res: Response): Promise<{ status: number; headers: Record<string, string>; body: string }> {
  const headers: Record<string, string> = {};
  res.headers.forEach((v, k) => {
    headers[k] = k === "x-request-id" && UUID.test(v) ? "<uuid>" : v;
  });
  const body = (await res.text()).replace(/"request_id":"[0-9a-f-]{36}"/g, '"request_id":"<uuid>"');
  return { status: res.status, headers, body };
}

/** Two apps over one database: `fast` (the fast path on, as served) and `chain` (off). */
class Pair {
  readonly state: ServerState = { draining: false };
  readonly fastAdmission: Admission;
  readonly chainAdmission: Admission;
  fast!: ReturnType<typeof createApp>;
  private readonly lanes: BulkLane[];
  chain!: ReturnType<typeof createApp>;

  private constructor(
    readonly a: Deps,
    readonly b: Deps,
    private readonly dir: string | undefined,
  ) {
    const opts = { maxInFlight: a.config.MAX_IN_FLIGHT, maxQueue: a.config.MAX_QUEUE, queueTimeoutMs: a.config.QUEUE_TIMEOUT_MS };
    this.fastAdmission = new Admission(opts);
    this.chainAdmission = new Admission(opts);
    this.lanes = [new BulkLane(a, { ...laneOptions(a.config), ...laneForms }), new BulkLane(b, { ...laneOptions(b.config), ...laneForms })];
    this.fast = createApp(a, this.state, "test", { admission: this.fastAdmission, lane: this.lanes[0] });
    this.chain = createApp(b, this.state, "test", { admission: this.chainAdmission, lane: this.lanes[1], fastPath: false });
  }

  static async open(env: Record<string, string>, overrides: Record<string, string> = {}): Promise<Pair> {
    const dir = env.POSTGRES_URL ? undefined : mkdtempSync(join(tmpdir(), "fs-fast-path-"));
    const all = { ...(dir ? { DATA_DIR: dir } : {}), ...env, ...overrides };
    const a = await openTestDeps(all);
    const b = await openTestDeps(all);
    return new Pair(a, b, dir);
  }

  async key(tenant: string, scopes: Scope[]): Promise<string> {
    const { key, row } = generateKey(tenant, scopes, Date.now(), null);
    await this.a.stores.registry.createKey(row);
    await this.a.keys.reload();
    await this.b.keys.reload();
    return key;
  }

  /** Sends `r` to both apps; returns what each answered. */
  async both(r: Req): Promise<[Awaited<ReturnType<typeof seen>>, Awaited<ReturnType<typeof seen>>]> {
    const init = () => ({ method: r.method, headers: r.headers ?? {}, ...(r.body !== undefined ? { body: r.body } : {}) });
    const f = await seen(await this.fast.request(r.path, init()));
    const c = await seen(await this.chain.request(r.path, init()));
    return [f, c];
  }

  /** The request counts and shed counts of each app's registry. */
  async counted(): Promise<[string, string]> {
    const read = async (d: Deps) =>
      (await d.metrics.registry.metrics())
        .split("\n")
        .filter((l) => /^feature_store_(http_requests_total|http_requests_shed_total|rate_limited_total|lookups_total)/.test(l))
        // the set-up (registrations and writes) went through one app only
        .filter((l) => !/route="\/api\/v1\/(features\/(register|write)|feature-services\/register)"/.test(l))
        .join("\n");
    return [await read(this.a), await read(this.b)];
  }

  async close(): Promise<void> {
    for (const l of this.lanes) await l.close();
    await closeDeps(this.a);
    await closeDeps(this.b);
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }
}

async function expectSame(p: Pair, reqs: Req[]): Promise<number[]> {
  const statuses: number[] = [];
  for (const r of reqs) {
    const [f, c] = await p.both(r);
    expect({ req: `${r.method} ${r.path} ${JSON.stringify(r.headers ?? {})} ${typeof r.body === "string" ? r.body.slice(0, 200) : r.body ? "<bytes>" : ""}`, ...f }).toEqual({
      req: `${r.method} ${r.path} ${JSON.stringify(r.headers ?? {})} ${typeof r.body === "string" ? r.body.slice(0, 200) : r.body ? "<bytes>" : ""}`,
      ...c,
    });
    statuses.push(f.status);
  }
  return statuses;
}

/**
 * A POST of `body` to the online route. With its Content-Length, as every HTTP client but a
 * chunked one sends it (a Request built in process has none; the fast path leaves those to the
 * chain, as it does chunked bodies).
 */
const json = (key: string | undefined, body: unknown, extra: Record<string, string> = {}): Req => {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  return {
    method: "POST",
    path: O,
    headers: { "content-type": "application/json", "content-length": String(Buffer.byteLength(text)), ...(key ? { "x-api-key": key } : {}), ...extra },
    body: text,
  };
};

for (const backend of contractBackends()) {
  describe(`online fast path = middleware chain, on ${backend.name}`, () => {
    let p: Pair;
    let tenant: string;
    let admin: string;
    let reader: string;
    let writer: string;
    let empty: string;

    beforeAll(async () => {
      p = await Pair.open(backend.env, { BODY_LIMIT_BYTES: "4096" });
      tenant = TestServer.tenant();
      admin = await p.key(tenant, ["admin"]);
      reader = await p.key(tenant, ["read"]);
      writer = await p.key(tenant, ["write"]);
      empty = await p.key(TestServer.tenant(), ["read"]);
      const call = async (path: string, body: unknown) => {
        const r = await p.fast.request(path, { method: "POST", headers: { "content-type": "application/json", "x-api-key": admin }, body: JSON.stringify(body) });
        expect(r.status).toBeLessThan(300);
      };
      for (const [name, dtype] of [["age", "int32"], ["ltv", "float64"], ["tags", "string[]"], ["seen", "timestamp"]]) {
        await call("/api/v1/features/register", { name, version: 1, dtype, entity_type: "user" });
      }
      await call("/api/v1/features/register", { name: "short", version: 1, dtype: "int32", entity_type: "user", ttl_hours: 1 });
      await call("/api/v1/features/register", { name: "risk", version: 1, dtype: "float32", entity_type: "merchant" });
      await call("/api/v1/features/write", {
        entity_type: "user",
        records: [
          { entity_id: "u1", event_time: new Date().toISOString(), features: { age: 31, ltv: 9.5, tags: ["a", "ü"], seen: "2024-01-15T10:00:00.123Z", short: 2 } },
          { entity_id: "u2", event_time: "2020-01-01T00:00:00Z", features: { age: 7, short: 1 } },
        ],
      });
      await call("/api/v1/features/write", { entity_type: "merchant", records: [{ entity_id: "m1", event_time: "2024-01-01T00:00:00Z", features: { risk: 0.25 } }] });
      await call("/api/v1/feature-services/register", { name: "user_model", version: 1, features: ["age", "ltv"] });
      await call("/api/v1/feature-services/register", { name: "fraud", version: 1, features: ["age", "risk"] });
      await p.a.registry.reload();
      await p.b.registry.reload();
    });
    afterAll(async () => {
      await p.close();
    });

    test("valid bodies of every form, cold and warm", async () => {
      const names = ["age", "ltv@1", "tags", "seen", "short", "age"];
      const reqs: Req[] = [];
      for (let pass = 0; pass < 2; pass++) {
        reqs.push(
          json(admin, { entity_id: "u1", feature_names: names }),
          json(reader, { entity_ids: ["u1", "u2", "nobody", "u1"], feature_names: ["age", "short", "ltv"] }),
          json(reader, { feature_names: ["age"], entity_id: "u2" }),
          json(reader, { entity_id: "u1", feature_service: "user_model" }),
          json(reader, { entity_ids: ["u1", "u2"], feature_service: "user_model@1" }),
          json(reader, { entity_rows: [{ user: "u1", merchant: "m1" }, { user: "u9", merchant: "m1" }], feature_service: "fraud" }),
          json(reader, { entity_id: "x".repeat(171), feature_names: ["age"] }),
          json(reader, { entity_id: "u\u00fc\u{1F642}", feature_names: ["age"] }),
          json(undefined, { entity_id: "u1", feature_names: ["age"] }, { authorization: `Bearer ${reader}` }),
          json(undefined, { entity_id: "u1", feature_names: ["age"] }, { authorization: `bearer   ${reader}  `, "content-type": "text/plain" }),
          // no Content-Length (a chunked body): left to the chain
          { method: "POST", path: O, headers: { "x-api-key": reader }, body: JSON.stringify({ entity_id: "u1", feature_names: ["age"] }) },
          json(` ${reader} `, { entity_id: "u1", feature_names: ["age"] }),
          json(reader, { entity_id: "u1", feature_names: ["age"] }, { "x-request-id": "client-id_1=" }),
          json(reader, { entity_id: "u1", feature_names: ["age"] }, { "x-request-id": "not ok!" }),
          json(reader, { entity_id: "u1", feature_names: ["age"] }, { "x-request-id": "a".repeat(256) }),
          { ...json(reader, { entity_id: "u1", feature_names: ["age"] }), path: `${O}?x=1` },
          { method: "GET", path: "/healthz" },
          { method: "GET", path: "/healthz", headers: { "x-request-id": "probe-1" } },
          { method: "HEAD", path: "/healthz" },
          { method: "GET", path: "/healthz?verbose=1" },
        );
      }
      const taken = fastPathTaken.count;
      const statuses = await expectSame(p, reqs);
      expect(statuses.every((s) => s === 200)).toBe(true);
      // all but the query strings, HEAD and the body without a length went the fast way
      expect(fastPathTaken.count - taken).toBe(reqs.length - 8);
      const [f, c] = await p.counted();
      expect(f).toBe(c);
    });

    test("errors: body, schema, features, tenant, key, size, method", async () => {
      const reqs: Req[] = [
        json(reader, "{not json"),
        json(reader, ""),
        json(reader, "   "),
        { ...json(reader, "{xx}"), body: new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]) },
        json(reader, "[1,2]"),
        json(reader, "null"),
        json(reader, { entity_id: 5, feature_names: ["age"] }),
        json(reader, { entity_id: "u1" }),
        json(reader, { entity_id: "u1", feature_names: [] }),
        json(reader, { entity_id: "u1", feature_names: ["age"], extra: 1 }),
        json(reader, { entity_id: "u1", entity_ids: ["u2"], feature_names: ["age"] }),
        json(reader, { entity_rows: [{ user: "u1" }], entity_id: "u1", feature_names: ["age"] }),
        json(reader, { entity_ids: [], feature_names: ["age"] }),
        json(reader, { entity_id: "", feature_names: ["age"] }),
        json(reader, { entity_id: "a\u0000b", feature_names: ["age"] }),
        json(reader, { entity_id: "u1", feature_names: ["Bad Name!"] }),
        json(reader, { entity_id: "u1", feature_names: ["age", "risk"] }),
        json(reader, { entity_id: "u1", feature_names: ["nope", "age@9"] }),
        json(reader, { entity_id: "u1", feature_service: "nope" }),
        json(reader, { entity_id: "u1", feature_service: "fraud" }),
        json(reader, '{"__proto__":{"x":1},"entity_id":"u1","feature_names":["age"]}'),
        json(reader, `{"entity_id":"u1","feature_names":["age"],"pad":"${"x".repeat(5000)}"}`),
        json(empty, { entity_id: "u1", feature_names: ["age"] }),
        json(undefined, { entity_id: "u1", feature_names: ["age"] }),
        json("fs_not_a_real_key", { entity_id: "u1", feature_names: ["age"] }),
        json(`fs_${"A".repeat(43)}`, { entity_id: "u1", feature_names: ["age"] }),
        json(undefined, { entity_id: "u1", feature_names: ["age"] }, { authorization: "Basic abc" }),
        json(writer, { entity_id: "u1", feature_names: ["age"] }),
        json(writer, "{bad"),
        { method: "PUT", path: O, headers: { "x-api-key": reader }, body: "{}" },
        { method: "GET", path: O, headers: { "x-api-key": reader } },
        { ...json(reader, { entity_id: "u1", feature_names: ["age"] }), path: `${O}/` },
      ];
      const taken = fastPathTaken.count;
      const statuses = await expectSame(p, reqs);
      expect(new Set(statuses)).toEqual(new Set([200, 400, 401, 404, 405, 413])); // 200: a write key reads too
      expect(fastPathTaken.count - taken).toBeGreaterThan(20);
      const [f, c] = await p.counted();
      expect(f).toBe(c);
    });

    test("admission control: a full in-flight limit and queue answer the same 503, counted alike", async () => {
      const held: Admission[] = [];
      for (const a of [p.fastAdmission, p.chainAdmission]) {
        while (a.tryAcquire()) held.push(a);
      }
      // the queue holds waiters up to MAX_QUEUE; with every slot taken and QUEUE_TIMEOUT_MS over, a waiter is refused
      const statuses = await expectSame(p, [json(reader, { entity_id: "u1", feature_names: ["age"] }), json(writer, { entity_id: "u1", feature_names: ["age"] })]);
      expect(statuses).toEqual([503, 503]);
      for (const a of held) a.release();
      expect(await expectSame(p, [json(reader, { entity_id: "u1", feature_names: ["age"] })])).toEqual([200]);
      const [f, c] = await p.counted();
      expect(f).toBe(c);
    });

    test("the drain: Connection: close on every answer", async () => {
      p.state.draining = true;
      try {
        const statuses = await expectSame(p, [json(reader, { entity_id: "u1", feature_names: ["age"] }), json(reader, "{"), { method: "GET", path: "/healthz" }]);
        expect(statuses).toEqual([200, 400, 200]);
      } finally {
        p.state.draining = false;
      }
      const [f] = await p.both(json(reader, { entity_id: "u1", feature_names: ["age"] }));
      expect(f.headers.connection).toBeUndefined();
    });
  });

  describe(`online fast path = middleware chain with a request deadline, on ${backend.name}`, () => {
    let p: Pair;
    beforeAll(async () => {
      p = await Pair.open(backend.env, { REQUEST_TIMEOUT_MS: "150" });
    });
    afterAll(async () => {
      await p.close();
    });

    test("a body that comes after the deadline: the same 503 with Retry-After, counted alike; the slot comes back once the body is in", async () => {
      const tenant = TestServer.tenant();
      const reader = await p.key(tenant, ["read"]);
      const text = JSON.stringify({ entity_id: "u1", feature_names: ["age"] });
      const slow = async (app: ReturnType<typeof createApp>): Promise<{ res: Response; sent: Promise<void> }> => {
        let sent!: () => void;
        const done = new Promise<void>((r) => {
          sent = r;
        });
        const body = new ReadableStream<Uint8Array>({
          async pull(ctl) {
            await Bun.sleep(400);
            ctl.enqueue(new TextEncoder().encode(text));
            ctl.close();
            sent();
          },
        });
        const taken = fastPathTaken.count;
        const res = await app.request(O, { method: "POST", headers: { "content-type": "application/json", "content-length": String(text.length), "x-api-key": reader }, body, duplex: "half" } as RequestInit);
        if (app === p.fast) expect(fastPathTaken.count).toBe(taken + 1);
        return { res, sent: done };
      };
      const f = await slow(p.fast);
      const c = await slow(p.chain);
      expect(f.res.status).toBe(503);
      expect(await seen(f.res)).toEqual(await seen(c.res));
      await Promise.all([f.sent, c.sent]);
      // the late work finishes in the background and gives its slot back
      for (let i = 0; i < 100 && (p.fastAdmission.inFlight !== 0 || p.chainAdmission.inFlight !== 0); i++) await Bun.sleep(10);
      expect([p.fastAdmission.inFlight, p.chainAdmission.inFlight]).toEqual([0, 0]);
      const [fc, cc] = await p.counted();
      expect(fc).toBe(cc);
      expect(fc).toContain('reason="deadline"');
    });
  });

  describe(`online fast path = middleware chain with a rate limit, on ${backend.name}`, () => {
    let p: Pair;
    beforeAll(async () => {
      // one app per key, so that both apps count the same requests (the limiter is per app, or shared in Redis: a key per app)
      p = await Pair.open(backend.env, { RATE_LIMIT_PER_KEY: "4", RATE_LIMIT_WINDOW_MS: "600000" });
    });
    afterAll(async () => {
      await p.close();
    });

    test("RateLimit headers on answers and errors, then 429 with Retry-After, counted alike", async () => {
      const tenant = TestServer.tenant();
      const fastKey = await p.key(tenant, ["read"]);
      const chainKey = await p.key(tenant, ["read"]);
      const writeFast = await p.key(tenant, ["write"]);
      const writeChain = await p.key(tenant, ["write"]);
      const pairs: [Req, Req][] = [];
      const both = (f: (k: string) => Req, fk: string, ck: string) => pairs.push([f(fk), f(ck)]);
      both((k) => json(k, { entity_id: "u1", feature_names: ["age"] }), fastKey, chainKey); // 404: nothing registered
      both((k) => json(k, "{"), fastKey, chainKey);
      both((k) => json(k, { entity_id: 1 }), fastKey, chainKey);
      both((k) => json(k, { entity_id: "u1", feature_names: ["age"] }), fastKey, chainKey);
      both((k) => json(k, { entity_id: "u1", feature_names: ["age"] }), fastKey, chainKey); // over the limit
      both((k) => json(k, "{"), fastKey, chainKey);
      both((k) => json(k, { entity_id: "u1", feature_names: ["age"] }), writeFast, writeChain);
      const statuses: number[] = [];
      for (const [fr, cr] of pairs) {
        const init = (r: Req) => ({ method: r.method, headers: r.headers ?? {}, ...(r.body !== undefined ? { body: r.body } : {}) });
        const f = await seen(await p.fast.request(fr.path, init(fr)));
        const c = await seen(await p.chain.request(cr.path, init(cr)));
        // Retry-After of a 429 counts down the window: compare it by presence
        for (const s of [f, c]) if (s.headers["retry-after"]) s.headers["retry-after"] = "<n>";
        expect(f).toEqual(c);
        statuses.push(f.status);
      }
      expect(statuses).toEqual([404, 400, 400, 404, 429, 429, 404]); // a write key reads too (admin > write > read)
      const [f, c] = await p.counted();
      expect(f).toBe(c);
    });
  });
}
