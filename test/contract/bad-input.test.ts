/** Contract suite (../shared/API.md), malformed and oversized requests; on every backend (see ./support.ts). */
import { describe, expect, test } from "bun:test";
import { TestServer } from "../support/backends.ts";
import { B, contractOn, expectProblem, O, R, W } from "./support.ts";

contractOn(({ backend, s, setup }) => {
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
});
