/**
 * The contract suite (../shared/API.md), written once and run against every backend. Each test
 * works in its own tenant, so tests never see each other's data even on a shared database.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { contractBackends, TestServer } from "../support/backends.ts";

const R = "/api/v1/features/register";
const W = "/api/v1/features/write";
const O = "/api/v1/features/online";
const B = "/api/v1/features/batch";

function expectProblem(res: { status: number; headers: Headers; body: Record<string, unknown> }, status: number, code: string) {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toContain("application/problem+json");
  expect(res.body.code).toBe(code);
  expect(res.body.status).toBe(status);
  expect(typeof res.body.type).toBe("string");
  expect(typeof res.body.title).toBe("string");
  expect(typeof res.body.detail).toBe("string");
  expect(typeof res.body.request_id).toBe("string");
}

for (const backend of contractBackends()) {
  describe(`contract on ${backend.name}`, () => {
    let s: TestServer;
    beforeAll(async () => {
      s = await TestServer.open(backend);
    });
    afterAll(async () => {
      await s.close();
    });

    /** A tenant with an admin key and the given definitions registered. */
    async function setup(defs: Record<string, unknown>[] = []) {
      const tenant = TestServer.tenant();
      const key = await s.key(tenant, ["admin"]);
      for (const d of defs) {
        const r = await s.post(R, { version: 1, entity_type: "user", ...d }, key);
        expect([200, 201]).toContain(r.status);
      }
      return { tenant, key };
    }

    describe("auth and tenants", () => {
      test("no key, unknown key, malformed bearer: identical 401", async () => {
        const a = await s.post(O, { entity_id: "x", feature_names: ["a"] });
        const b = await s.post(O, { entity_id: "x", feature_names: ["a"] }, "fs_not_a_real_key");
        const c = await s.call("POST", O, { entity_id: "x", feature_names: ["a"] }, { headers: { authorization: "Basic abc" } });
        for (const r of [a, b, c]) expectProblem(r, 401, "unauthenticated");
        expect(a.body.detail).toBe(b.body.detail);
      });

      test("Authorization: Bearer works like X-API-Key", async () => {
        const { key } = await setup();
        const r = await s.call("GET", "/api/v1/features", undefined, { headers: { authorization: `Bearer ${key}` } });
        expect(r.status).toBe(200);
        expect(r.body).toEqual({ features: [] });
      });

      test("scopes: read < write < admin", async () => {
        const { tenant, key } = await setup([{ name: "f", dtype: "int32" }]);
        const read = await s.key(tenant, ["read"]);
        const write = await s.key(tenant, ["write"]);
        const rec = { entity_type: "user", records: [{ entity_id: "u", features: { f: 1 } }] };
        expectProblem(await s.post(W, rec, read), 403, "forbidden");
        expectProblem(await s.post(R, { name: "g", version: 1, dtype: "int32", entity_type: "user" }, write), 403, "forbidden");
        expect((await s.post(W, rec, write)).status).toBe(200);
        expect((await s.post(O, { entity_id: "u", feature_names: ["f"] }, read)).status).toBe(200);
        expect((await s.post(B, { entity_ids: ["u"], feature_names: ["f"], timestamp: new Date().toISOString() }, read)).status).toBe(200);
        expect((await s.get("/api/v1/features", read)).status).toBe(200);
        expect((await s.get("/api/v1/features/f", read)).status).toBe(200);
        expect((await s.post(R, { name: "g", version: 1, dtype: "int32", entity_type: "user" }, key)).status).toBe(201);
      });

      test("tenants are isolated on every route", async () => {
        const a = await setup([{ name: "secret", dtype: "int32" }]);
        await s.post(W, { entity_type: "user", records: [{ entity_id: "u1", features: { secret: 42 } }] }, a.key);
        const b = await setup();
        expect((await s.get("/api/v1/features", b.key)).body).toEqual({ features: [] });
        expectProblem(await s.get("/api/v1/features/secret", b.key), 404, "not_found");
        expectProblem(await s.post(O, { entity_id: "u1", feature_names: ["secret"] }, b.key), 404, "not_found");
        expectProblem(await s.post(B, { entity_ids: ["u1"], feature_names: ["secret"], timestamp: new Date().toISOString() }, b.key), 404, "not_found");
        expectProblem(await s.post(W, { entity_type: "user", records: [{ entity_id: "u1", features: { secret: 1 } }] }, b.key), 400, "invalid_request");
        // b registering the same name does not touch a's definition or values
        expect((await s.post(R, { name: "secret", version: 1, dtype: "string", entity_type: "user" }, b.key)).status).toBe(201);
        const av = await s.post(O, { entity_id: "u1", feature_names: ["secret"] }, a.key);
        expect(av.body.features.secret).toBe(42);
        const bv = await s.post(O, { entity_id: "u1", feature_names: ["secret"] }, b.key);
        expect(bv.body.metadata.secret.status).toBe("not_found");
      });

      test("a revoked key stops working", async () => {
        const { tenant } = await setup();
        const key = await s.key(tenant, ["read"]);
        expect((await s.get("/api/v1/features", key)).status).toBe(200);
        const [row] = (await s.deps.db.listKeys(tenant)).filter((k) => key.startsWith(k.prefix));
        expect(await s.deps.db.revokeKey(row!.id, Date.now())).toBe(true);
        await s.deps.keys.reload();
        expectProblem(await s.get("/api/v1/features", key), 401, "unauthenticated");
      });
    });

    describe("register", () => {
      test("201 new, 200 identical with metadata replaced, 409 on changed dtype/ttl/entity type", async () => {
        const { key } = await setup();
        const body = { name: "user_lifetime_value", version: 1, dtype: "float64", entity_type: "user", ttl_hours: 24, description: "d1", owner: "o", tags: { a: "1" } };
        const r1 = await s.post(R, body, key);
        expect(r1.status).toBe(201);
        expect(r1.body.feature).toMatchObject({ ...body });
        expect(r1.body.feature.created_at).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
        const r2 = await s.post(R, { ...body, description: "d2", tags: undefined, owner: undefined }, key);
        expect(r2.status).toBe(200);
        expect(r2.body.feature.description).toBe("d2");
        expect(r2.body.feature.owner).toBeNull();
        expect(r2.body.feature.tags).toEqual({});
        expect(r2.body.feature.created_at).toBe(r1.body.feature.created_at);
        expectProblem(await s.post(R, { ...body, dtype: "float32" }, key), 409, "conflict");
        expectProblem(await s.post(R, { ...body, ttl_hours: 48 }, key), 409, "conflict");
        const { ttl_hours: _ttl, ...noTtl } = body;
        expectProblem(await s.post(R, noTtl, key), 409, "conflict");
        expectProblem(await s.post(R, { ...body, entity_type: "item" }, key), 409, "conflict");
        // a new version may change dtype, not entity type
        expect((await s.post(R, { ...body, version: 2, dtype: "float32" }, key)).status).toBe(201);
        expectProblem(await s.post(R, { ...body, version: 3, entity_type: "item" }, key), 409, "conflict");
      });

      test("invalid bodies are 400 with errors", async () => {
        const { key } = await setup();
        const ok = { name: "x", version: 1, dtype: "int32", entity_type: "user" };
        for (const [bad, path] of [
          [{ ...ok, name: "Bad Name" }, "name"],
          [{ ...ok, name: "a".repeat(129) }, "name"],
          [{ ...ok, version: 0 }, "version"],
          [{ ...ok, version: 1.5 }, "version"],
          [{ ...ok, version: "1" }, "version"],
          [{ ...ok, dtype: "decimal" }, "dtype"],
          [{ ...ok, dtype: "int32[][]" }, "dtype"],
          [{ ...ok, entity_type: "User" }, "entity_type"],
          [{ ...ok, ttl_hours: 0 }, "ttl_hours"],
          [{ ...ok, ttl_hours: -1 }, "ttl_hours"],
          [{ ...ok, tags: { a: 1 } }, "tags.a"],
          [{ ...ok, extra: true }, "extra"],
          [{ version: 1, dtype: "int32", entity_type: "user" }, "name"],
        ] as [Record<string, unknown>, string][]) {
          const r = await s.post(R, bad, key);
          expectProblem(r, 400, "invalid_request");
          expect(r.body.errors.map((e: { path: string }) => e.path)).toContain(path);
        }
      });

      test("list shows the latest version of each, filtered by entity type; get shows all versions", async () => {
        const { key } = await setup([
          { name: "b_feat", dtype: "int32" },
          { name: "a_feat", dtype: "string", entity_type: "item" },
        ]);
        await s.post(R, { name: "b_feat", version: 2, dtype: "int64", entity_type: "user" }, key);
        const all = await s.get("/api/v1/features", key);
        expect(all.body.features.map((f: { name: string; version: number }) => `${f.name}@${f.version}`)).toEqual(["a_feat@1", "b_feat@2"]);
        const users = await s.get("/api/v1/features?entity_type=user", key);
        expect(users.body.features.map((f: { name: string }) => f.name)).toEqual(["b_feat"]);
        const one = await s.get("/api/v1/features/b_feat", key);
        expect(one.body.name).toBe("b_feat");
        expect(one.body.versions.map((v: { version: number; dtype: string }) => `${v.version}:${v.dtype}`)).toEqual(["1:int32", "2:int64"]);
        expectProblem(await s.get("/api/v1/features/nope", key), 404, "not_found");
        expectProblem(await s.get("/api/v1/features?entity_type=Bad!", key), 400, "invalid_request");
      });
    });

    describe("values", () => {
      test("every dtype round-trips in its JSON form", async () => {
        const cases: [string, unknown, unknown][] = [
          ["bool", true, true],
          ["int32", -2147483648, -2147483648],
          ["int64", 9007199254740991, 9007199254740991],
          ["int64", "9223372036854775807", "9223372036854775807"],
          ["int64", "-9223372036854775808", "-9223372036854775808"],
          ["int64", "42", 42],
          ["float32", 0.1, 0.1],
          ["float32", 16777217, 16777216],
          ["float64", 0.1, 0.1],
          ["float64", -1.5e300, -1.5e300],
          ["string", "héllo 😀 \u2028", "héllo 😀 \u2028"],
          ["bytes", "AAECAwQ=", "AAECAwQ="],
          ["bytes", "", ""],
          ["timestamp", "2024-01-15T10:00:00.123456+02:00", "2024-01-15T08:00:00.123Z"],
          ["bool[]", [true, false], [true, false]],
          ["int32[]", [], []],
          ["int64[]", ["9223372036854775807", 1], ["9223372036854775807", 1]],
          ["float32[]", [0.1, 0.2, 1e-7], [0.1, 0.2, 1e-7]],
          ["float64[]", [0.1, 2], [0.1, 2]],
          ["string[]", ["a", ""], ["a", ""]],
          ["bytes[]", ["AA==", "AAE="], ["AA==", "AAE="]],
          ["timestamp[]", ["2024-01-01T00:00:00Z"], ["2024-01-01T00:00:00.000Z"]],
        ];
        const defs = cases.map(([dtype], i) => ({ name: `f${i}`, dtype }));
        const { key } = await setup(defs);
        const features = Object.fromEntries(cases.map(([, input], i) => [`f${i}`, input]));
        const w = await s.post(W, { entity_type: "user", records: [{ entity_id: "u", event_time: "2024-01-01T00:00:00Z", features }] }, key);
        expect(w.status).toBe(200);
        expect(w.body).toEqual({ written: cases.length });
        const o = await s.post(O, { entity_id: "u", feature_names: defs.map((d) => d.name) }, key);
        expect(o.status).toBe(200);
        cases.forEach(([dtype, , out], i) => {
          expect([dtype, o.body.features[`f${i}`]]).toEqual([dtype, out]);
          expect(o.body.metadata[`f${i}`]).toEqual({ status: "present", event_time: "2024-01-01T00:00:00.000Z" });
        });
        const b = await s.post(B, { entity_ids: ["u"], feature_names: defs.map((d) => d.name), timestamp: "2024-01-02T00:00:00Z" }, key);
        expect(b.body.results[0].features).toEqual(o.body.features);
      });

      test("invalid values are 400 naming record and feature, and nothing is written", async () => {
        const { key } = await setup([
          { name: "i32", dtype: "int32" },
          { name: "i64", dtype: "int64" },
          { name: "f32", dtype: "float32" },
          { name: "b", dtype: "bytes" },
          { name: "ts", dtype: "timestamp" },
          { name: "s", dtype: "string" },
          { name: "l", dtype: "int32[]" },
          { name: "other", dtype: "int32", entity_type: "item" },
        ]);
        const bad: [string, unknown][] = [
          ["i32", 2147483648],
          ["i32", 1.5],
          ["i32", "1"],
          ["i32", null],
          ["i64", 9007199254740993],
          ["i64", "12a"],
          ["i64", "9223372036854775808"],
          ["f32", 1e39],
          ["f32", "NaN"],
          ["b", "not base64!"],
          ["b", "AAE"],
          ["ts", "2024-13-01T00:00:00Z"],
          ["ts", "yesterday"],
          ["s", 5],
          ["l", [1, null]],
          ["l", 1],
          ["other", 1],
          ["unknown_feature", 1],
        ];
        for (const [f, v] of bad) {
          const r = await s.post(W, { entity_type: "user", records: [{ entity_id: "ok", features: { i32: 1 } }, { entity_id: "u", features: { [f]: v } }] }, key);
          expectProblem(r, 400, "invalid_request");
          expect([f, r.body.errors[0].path]).toEqual([f, `records[1].features.${f}`]);
        }
        const o = await s.post(O, { entity_id: "ok", feature_names: ["i32"] }, key);
        expect(o.body.metadata.i32.status).toBe("not_found");
      });

      test("ordering: newest event time online, older kept for batch, ties to the last written, re-sends not stored twice", async () => {
        const { key } = await setup([{ name: "v", dtype: "int32" }]);
        const write = (t: string, v: number) => s.post(W, { entity_type: "user", records: [{ entity_id: "u", event_time: t, features: { v } }] }, key);
        expect((await write("2024-01-10T00:00:00Z", 10)).body.written).toBe(1);
        expect((await write("2024-01-05T00:00:00Z", 5)).body.written).toBe(1);
        let o = await s.post(O, { entity_id: "u", feature_names: ["v"] }, key);
        expect(o.body.features.v).toBe(10);
        const at = (t: string) => s.post(B, { entity_ids: ["u"], feature_names: ["v"], timestamp: t }, key).then((r) => r.body.results[0]);
        expect((await at("2024-01-06T00:00:00Z")).features.v).toBe(5);
        expect((await at("2024-01-04T23:59:59.999Z")).metadata.v).toEqual({ status: "not_found", event_time: null });
        // same event time: the value written last wins, online and in batch
        await write("2024-01-10T00:00:00Z", 11);
        await write("2024-01-10T00:00:00.000+00:00", 12);
        o = await s.post(O, { entity_id: "u", feature_names: ["v"] }, key);
        expect(o.body.features.v).toBe(12);
        expect((await at("2024-01-10T00:00:00Z")).features.v).toBe(12);
        // re-sending 11 is identical to a stored value: it changes nothing (12 stays current)
        expect((await write("2024-01-10T00:00:00Z", 11)).body.written).toBe(1);
        o = await s.post(O, { entity_id: "u", feature_names: ["v"] }, key);
        expect(o.body.features.v).toBe(12);
        expect((await at("2024-01-11T00:00:00Z")).features.v).toBe(12);
      });

      test("a future value is not visible in batch at earlier times, and millisecond precision holds", async () => {
        const { key } = await setup([{ name: "v", dtype: "int32" }]);
        await s.post(W, { entity_type: "user", records: [
          { entity_id: "u", event_time: "2024-01-01T00:00:00.001Z", features: { v: 1 } },
          { entity_id: "u", event_time: "2024-01-01T00:00:00.002999Z", features: { v: 2 } },
        ] }, key);
        const rows = [
          { entity_id: "u", timestamp: "2024-01-01T00:00:00.000Z" },
          { entity_id: "u", timestamp: "2024-01-01T00:00:00.001Z" },
          { entity_id: "u", timestamp: "2024-01-01T00:00:00.0019Z" },
          { entity_id: "u", timestamp: "2024-01-01T00:00:00.002Z" },
          { entity_id: "u", timestamp: "2024-01-01T01:00:00.002+01:00" },
        ];
        const r = await s.post(B, { rows, feature_names: ["v"] }, key);
        expect(r.status).toBe(200);
        expect(r.body.results.map((x: { features: { v: unknown } }) => x.features.v)).toEqual([null, 1, 1, 2, 2]);
        expect(r.body.results[4].timestamp).toBe("2024-01-01T00:00:00.002Z");
        expect(r.body.results[3].metadata.v.event_time).toBe("2024-01-01T00:00:00.002Z");
      });

      test("an event time more than MAX_FUTURE_SKEW ahead of the server clock is 400 naming the record, nothing written; batch may ask about the future", async () => {
        const { key } = await setup([{ name: "v", dtype: "int32" }]);
        const past = new Date(Date.now() - 3_600_000).toISOString();
        const soon = new Date(Date.now() + 60_000).toISOString();
        const records = [past, past, soon, "9999-12-31T23:59:59Z"].map((t, i) => ({ entity_id: `u${i}`, event_time: t, features: { v: i } }));
        const r = await s.post(W, { entity_type: "user", records }, key);
        expectProblem(r, 400, "invalid_request");
        expect(r.body.errors).toEqual([{ path: "records[3].event_time", message: expect.stringMatching(/^9999-12-31T23:59:59\.000Z is more than MAX_FUTURE_SKEW \(300 s\) ahead of the server clock/) }]);
        const none = await s.post(O, { entity_ids: ["u0", "u2"], feature_names: ["v"] }, key);
        expect(none.body.results.map((x: { metadata: { v: { status: string } } }) => x.metadata.v.status)).toEqual(["not_found", "not_found"]);
        // within the default skew (5 minutes): accepted
        expect((await s.post(W, { entity_type: "user", records: records.slice(0, 3) }, key)).body).toEqual({ written: 3 });
        const far = await s.post(B, { entity_ids: ["u2"], feature_names: ["v"], timestamp: "9999-12-31T23:59:59Z" }, key);
        expect(far.status).toBe(200);
        expect(far.body.results[0].features.v).toBe(2);
        // the limit is a setting
        const lax = await TestServer.open(backend, { MAX_FUTURE_SKEW: "2h" });
        try {
          const k2 = await lax.key(TestServer.tenant());
          expect((await lax.post(R, { name: "v", version: 1, dtype: "int32", entity_type: "user" }, k2)).status).toBe(201);
          const inAnHour = new Date(Date.now() + 3_600_000).toISOString();
          expect((await lax.post(W, { entity_type: "user", records: [{ entity_id: "u", event_time: inAnHour, features: { v: 1 } }] }, k2)).body).toEqual({ written: 1 });
        } finally {
          await lax.close();
        }
      });

      test("ttl: expired online and at a batch timestamp; a missing event_time means now", async () => {
        const { key } = await setup([{ name: "fresh", dtype: "int32", ttl_hours: 1 }, { name: "forever", dtype: "int32" }]);
        const old = new Date(Date.now() - 2 * 3600_000).toISOString();
        await s.post(W, { entity_type: "user", records: [{ entity_id: "u", event_time: old, features: { fresh: 1, forever: 2 } }] }, key);
        const o = await s.post(O, { entity_id: "u", feature_names: ["fresh", "forever"] }, key);
        expect(o.body.features).toEqual({ fresh: null, forever: 2 });
        expect(o.body.metadata.fresh.status).toBe("expired");
        expect(o.body.metadata.fresh.event_time).toBe(new Date(Date.parse(old)).toISOString());
        const at = new Date(Date.parse(old) + 30 * 60_000).toISOString();
        const b = await s.post(B, { entity_ids: ["u"], feature_names: ["fresh"], timestamp: at }, key);
        expect(b.body.results[0].metadata.fresh.status).toBe("present");
        const exactly = new Date(Date.parse(old) + 3600_000).toISOString();
        const e = await s.post(B, { entity_ids: ["u"], feature_names: ["fresh"], timestamp: exactly }, key);
        expect(e.body.results[0].metadata.fresh.status).toBe("expired");
        const before = Date.now();
        await s.post(W, { entity_type: "user", records: [{ entity_id: "u", features: { fresh: 3 } }] }, key);
        const n = await s.post(O, { entity_id: "u", feature_names: ["fresh"] }, key);
        expect(n.body.features.fresh).toBe(3);
        expect(Date.parse(n.body.metadata.fresh.event_time)).toBeGreaterThanOrEqual(before - 1);
      });

      test("online: many entities in request order, references keyed as written, name@N", async () => {
        const { key } = await setup([{ name: "v", dtype: "int32" }]);
        await s.post(R, { name: "v", version: 2, dtype: "string", entity_type: "user" }, key);
        await s.post(W, { entity_type: "user", records: [
          { entity_id: "b", features: { "v@1": 1, v: "two" } },
          { entity_id: "é/é:{x}", features: { "v@1": 7 } },
        ] }, key);
        const r = await s.post(O, { entity_ids: ["é/é:{x}", "missing", "b"], feature_names: ["v@1", "v", "v@2"] }, key);
        expect(r.status).toBe(200);
        expect(r.body.results.map((x: { entity_id: string }) => x.entity_id)).toEqual(["é/é:{x}", "missing", "b"]);
        expect(r.body.results[2].features).toEqual({ "v@1": 1, v: "two", "v@2": "two" });
        expect(r.body.results[0].features).toEqual({ "v@1": 7, v: null, "v@2": null });
        expect(r.body.results[1].metadata["v@1"]).toEqual({ status: "not_found", event_time: null });
      });

      test("unknown features are 404 listing them; mixed entity types and bad references are 400", async () => {
        const { key } = await setup([{ name: "a", dtype: "int32" }, { name: "i", dtype: "int32", entity_type: "item" }]);
        const r = await s.post(O, { entity_id: "u", feature_names: ["a", "nope", "a@9"] }, key);
        expectProblem(r, 404, "not_found");
        expect(r.body.detail).toContain("nope");
        expect(r.body.detail).toContain("a@9");
        expectProblem(await s.post(O, { entity_id: "u", feature_names: ["a", "i"] }, key), 400, "invalid_request");
        expectProblem(await s.post(O, { entity_id: "u", feature_names: ["A b"] }, key), 400, "invalid_request");
        expectProblem(await s.post(B, { entity_ids: ["u"], feature_names: ["nope"], timestamp: "2024-01-01T00:00:00Z" }, key), 404, "not_found");
        expectProblem(await s.post(B, { entity_ids: ["u"], feature_names: ["a", "i"], timestamp: "2024-01-01T00:00:00Z" }, key), 400, "invalid_request");
      });

      test("batch streams NDJSON", async () => {
        const { key } = await setup([{ name: "v", dtype: "int32" }]);
        await s.post(W, { entity_type: "user", records: [{ entity_id: "a", event_time: "2024-01-01T00:00:00Z", features: { v: 1 } }] }, key);
        const r = await s.post(B, { entity_ids: ["a", "b", "a"], feature_names: ["v"], timestamp: "2024-02-01T00:00:00Z" }, key, { accept: "application/x-ndjson" });
        expect(r.status).toBe(200);
        expect(r.headers.get("content-type")).toContain("application/x-ndjson");
        const lines = r.text.trim().split("\n").map((l) => JSON.parse(l));
        expect(lines.map((l) => [l.entity_id, l.features.v])).toEqual([["a", 1], ["b", null], ["a", 1]]);
      });
    });

    describe("bad input", () => {
      test("malformed bodies, wrong types, limits: 400 with errors; the server stays healthy", async () => {
        const { key } = await setup([{ name: "v", dtype: "int32" }]);
        for (const body of ["{", "[]", "null", "", "\"x\"", new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])]) {
          expectProblem(await s.post(O, body, key), 400, "invalid_request");
          expectProblem(await s.post(W, body, key), 400, "invalid_request");
          expectProblem(await s.post(R, body, key), 400, "invalid_request");
          expectProblem(await s.post(B, body, key), 400, "invalid_request");
        }
        const deep = "[".repeat(100_000) + "]".repeat(100_000);
        expectProblem(await s.post(O, deep, key), 400, "invalid_request");
        const cases: [string, unknown, string][] = [
          [O, { entity_id: 5, feature_names: ["v"] }, "entity_id"],
          [O, { entity_id: "", feature_names: ["v"] }, "entity_id"],
          [O, { entity_id: "x".repeat(513), feature_names: ["v"] }, "entity_id"],
          [O, { entity_id: "a\u0000b", feature_names: ["v"] }, "entity_id"],
          [O, { entity_id: "u" }, "feature_names"],
          [O, { entity_ids: Array.from({ length: 1001 }, (_, i) => `u${i}`), feature_names: ["v"] }, "entity_ids"],
          [O, { entity_id: "u", feature_names: Array.from({ length: 1001 }, () => "v") }, "feature_names"],
          [W, { entity_type: "user", records: Array.from({ length: 10_001 }, () => ({ entity_id: "u", features: {} })) }, "records"],
          [W, { entity_type: "user", records: [{ entity_id: "u", features: { v: 1 }, extra: 1 }] }, "records[0].extra"],
          [W, { entity_type: "user", records: [{ entity_id: "u", event_time: "2024-01-01", features: { v: 1 } }] }, "records[0].event_time"],
          [W, { records: [] }, "entity_type"],
          [B, { entity_ids: ["u"], feature_names: ["v"] }, "timestamp"],
          [B, { entity_ids: ["u"], feature_names: ["v"], timestamp: "not a time" }, "timestamp"],
          [B, { rows: [{ entity_id: "u" }], feature_names: ["v"] }, "rows[0].timestamp"],
        ];
        for (const [path, body, errPath] of cases) {
          const r = await s.post(path, body, key);
          expectProblem(r, 400, "invalid_request");
          expect([errPath, r.body.errors?.some((e: { path: string }) => e.path === errPath || e.path.startsWith(`${errPath}.`) || e.path.startsWith(`${errPath}[`))]).toEqual([errPath, true]);
        }
        const big = "x".repeat(600 * 1024);
        await s.post(R, { name: "big", version: 1, dtype: "string[]", entity_type: "user" }, key);
        const over = await s.post(W, { entity_type: "user", records: [{ entity_id: "u", features: { big: [big, big] } }] }, key);
        expectProblem(over, 400, "invalid_request");
        expect(over.body.errors[0].path).toBe("records[0].features.big");
        expect((await s.get("/healthz")).status).toBe(200);
        expect((await s.post(O, { entity_id: "u", feature_names: ["v"] }, key)).status).toBe(200);
      });

      test("a body over the configured limit is 413", async () => {
        const small = await TestServer.open(backend, { BODY_LIMIT_BYTES: "1024" });
        try {
          const tenant = TestServer.tenant();
          const key = await small.key(tenant);
          const body = JSON.stringify({ entity_id: "u", feature_names: ["v"], pad: "x".repeat(2000) });
          expectProblem(await small.post(O, body, key), 413, "payload_too_large");
          const chunked = new ReadableStream({
            start(c) {
              c.enqueue(new TextEncoder().encode(body));
              c.close();
            },
          });
          const res = await small.app.request(O, { method: "POST", body: chunked, headers: { "x-api-key": key, "content-type": "application/json" }, duplex: "half" } as RequestInit);
          expect(res.status).toBe(413);
        } finally {
          await small.close();
        }
      });

      test("unknown routes are problem+json 404", async () => {
        expectProblem(await s.get("/api/v2/nothing"), 404, "not_found");
      });
    });

    describe("operations", () => {
      test("healthz, readyz, metrics, openapi, docs", async () => {
        expect((await s.get("/healthz")).status).toBe(200);
        const ready = await s.get("/readyz");
        expect(ready.status).toBe(200);
        expect(ready.body).toEqual({ status: "ok", stores: { database: "ok", cache: backend.env.REDIS_URL ? "ok" : "in_process" } });
        const m = await s.get("/metrics");
        for (const name of [
          "feature_store_http_requests_total",
          "feature_store_http_request_duration_seconds",
          "feature_store_lookups_total",
          "feature_store_cache_requests_total",
          "feature_store_served_value_age_seconds",
          "feature_store_store_up",
        ]) expect([name, m.text.includes(name)]).toEqual([name, true]);
        expect(m.text).not.toMatch(/t_[0-9a-f]{12}/);
        const doc = await s.get("/openapi.json");
        expect(doc.body.openapi).toBe("3.1.0");
        for (const p of [R, W, O, B, "/api/v1/features", "/api/v1/features/{name}", "/healthz", "/readyz", "/metrics"]) expect(Object.keys(doc.body.paths)).toContain(p);
        const docs = await s.get("/docs");
        expect(docs.status).toBe(200);
        expect(docs.text).toContain("/docs/swagger-ui-bundle.js");
        const js = await s.get("/docs/swagger-ui-bundle.js");
        expect(js.status).toBe(200);
        expect(js.text.length).toBeGreaterThan(100_000);
      });

      test("readyz is 503 down while draining", async () => {
        s.state.draining = true;
        try {
          const r = await s.get("/readyz");
          expect(r.status).toBe(503);
          expect(r.body.status).toBe("down");
        } finally {
          s.state.draining = false;
        }
      });

      test("another process's registration, writes and key changes are visible within a second", async () => {
        const other = await TestServer.open(backend.env.POSTGRES_URL ? backend : { ...backend, env: { ...backend.env } }, backend.env.POSTGRES_URL ? {} : { DATA_DIR: (s.deps.config.DATA_DIR) });
        try {
          const tenant = TestServer.tenant();
          const key = await other.key(tenant);
          await other.post(R, { name: "v", version: 1, dtype: "int32", entity_type: "user" }, key);
          const deadline = Date.now() + 1500;
          let seen = 0;
          while (Date.now() < deadline) {
            const r = await s.post(O, { entity_id: "u", feature_names: ["v"] }, key);
            if (r.status === 200) {
              seen = r.status;
              break;
            }
            await Bun.sleep(50);
          }
          expect(seen).toBe(200);
          // a value cached as not_found here is replaced once the other process writes it
          await other.post(W, { entity_type: "user", records: [{ entity_id: "u", features: { v: 9 } }] }, key);
          let v: unknown = null;
          const d2 = Date.now() + 1500;
          while (Date.now() < d2 && v !== 9) {
            v = (await s.post(O, { entity_id: "u", feature_names: ["v"] }, key)).body.features.v;
            if (v !== 9) await Bun.sleep(50);
          }
          expect(v).toBe(9);
        } finally {
          await other.close();
        }
      });
    });
  });
}
