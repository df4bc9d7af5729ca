/**
 * Feature views and feature services on every backend: registering them, `view:name`
 * references, `feature_service` in online and batch requests, `entity_rows` across entity types.
 */
import { describe, expect, test } from "bun:test";
import { TestServer } from "../support/backends.ts";
import { B, contractOn, O, R, W } from "./support.ts";

const V = "/api/v1/feature-views/register";
const S = "/api/v1/feature-services/register";

contractOn(({ s }) => {
  describe("views and services", () => {
    /** A tenant with user features age (v1 int32, v2 int64) and ltv, merchant feature risk, two views, values. */
    async function setup() {
      const tenant = TestServer.tenant();
      const key = await s.key(tenant, ["admin"]);
      for (const d of [
        { name: "age", version: 1, dtype: "int32", entity_type: "user" },
        { name: "age", version: 2, dtype: "int64", entity_type: "user" },
        { name: "ltv", version: 1, dtype: "float64", entity_type: "user" },
        { name: "risk", version: 1, dtype: "float32", entity_type: "merchant" },
      ]) expect((await s.post(R, d, key)).status).toBe(201);
      const uv = await s.post(V, { name: "user_stats", version: 1, entity_type: "user", join_keys: ["user_id"], features: ["age", "ltv"] }, key);
      expect(uv.status).toBe(201);
      expect((await s.post(V, { name: "merchant_stats", version: 1, entity_type: "merchant", features: ["risk"] }, key)).status).toBe(201);
      const t = "2024-01-15T09:58:00Z";
      const w1 = await s.post(W, { entity_type: "user", records: [{ entity_id: "u1", event_time: t, features: { "age@1": 30, "user_stats:age": 31, "user_stats:ltv": 9.5 } }] }, key);
      expect(w1.body).toEqual({ written: 3 });
      expect((await s.post(W, { entity_type: "merchant", records: [{ entity_id: "m1", event_time: t, features: { risk: 0.1 } }] }, key)).status).toBe(200);
      return { tenant, key, view: uv.body };
    }

    test("register a view: 201, then 200 (metadata replaced), 409 on a changed definition", async () => {
      const { key, view } = await setup();
      expect(view.feature_view).toMatchObject({ name: "user_stats", version: 1, entity_type: "user", join_keys: ["user_id"], features: ["age", "ltv"], push_source: null });
      const again = await s.post(V, { name: "user_stats", version: 1, entity_type: "user", join_keys: ["user_id"], features: ["age", "ltv"], owner: "ml" }, key);
      expect(again.status).toBe(200);
      expect(again.body.feature_view.owner).toBe("ml");
      const changed = await s.post(V, { name: "user_stats", version: 1, entity_type: "user", join_keys: ["user_id"], features: ["age"] }, key);
      expect(changed.status).toBe(409);
      expect(changed.body.code).toBe("conflict");
      // every view of an entity type names it by the same join key
      const otherKey = await s.post(V, { name: "user_more", version: 1, entity_type: "user", join_keys: ["uid"], features: ["age"] }, key);
      expect(otherKey.status).toBe(409);
      expect(otherKey.body.detail).toContain("join keys");
      const wrongType = await s.post(V, { name: "bad", version: 1, entity_type: "user", features: ["risk"] }, key);
      expect(wrongType.status).toBe(400);
      expect(wrongType.body.detail).toContain("risk has entity type merchant");
    });

    test("a view or service naming unknown features is refused, listing every unknown reference", async () => {
      const { key } = await setup();
      const v = await s.post(V, { name: "v", version: 1, entity_type: "user", features: ["age", "nope", "age@9"] }, key);
      expect(v.status).toBe(400);
      expect(v.body.code).toBe("invalid_request");
      expect(v.body.errors).toEqual([
        { path: "features[1]", message: 'unknown feature reference "nope"' },
        { path: "features[2]", message: 'unknown feature reference "age@9"' },
      ]);
      const svc = await s.post(S, { name: "m", version: 1, features: ["user_stats:*", "merchant_stats:nope", "ghost:*", "ltv"] }, key);
      expect(svc.status).toBe(400);
      expect(svc.body.detail).toBe("unknown feature reference(s): merchant_stats:nope, ghost:*");
      expect((await s.get("/api/v1/feature-services", key)).body).toEqual({ feature_services: [] });
    });

    test("view:name and view:name@N read like the feature itself; list and get", async () => {
      const { key } = await setup();
      const r = await s.post(O, { entity_id: "u1", feature_names: ["user_stats:age", "user_stats:age@1", "age", "user_stats:ltv"] }, key);
      expect(r.status).toBe(200);
      expect(r.body.features).toEqual({ "user_stats:age": 31, "user_stats:age@1": 30, age: 31, "user_stats:ltv": 9.5 });
      expect(r.body.metadata["user_stats:age"]).toEqual({ status: "present", event_time: "2024-01-15T09:58:00.000Z" });
      const unknown = await s.post(O, { entity_id: "u1", feature_names: ["user_stats:risk", "nowhere:age"] }, key);
      expect(unknown.status).toBe(404);
      expect(unknown.body.detail).toBe('unknown feature(s): "user_stats:risk", "nowhere:age"');
      const list = await s.get("/api/v1/feature-views", key);
      expect(list.body.feature_views.map((v: { name: string }) => v.name)).toEqual(["merchant_stats", "user_stats"]);
      const one = await s.get("/api/v1/feature-views/user_stats", key);
      expect(one.body.versions).toHaveLength(1);
      expect((await s.get("/api/v1/feature-views/nope", key)).status).toBe(404);
    });

    test("feature_service online: one entity type answers like feature_names; several need entity_rows", async () => {
      const { key } = await setup();
      expect((await s.post(S, { name: "user_model", version: 1, features: ["user_stats:*"] }, key)).status).toBe(201);
      const one = await s.post(O, { entity_id: "u1", feature_service: "user_model" }, key);
      expect(one.status).toBe(200);
      expect(one.body.features).toEqual({ "user_stats:age": 31, "user_stats:ltv": 9.5 });
      const many = await s.post(O, { entity_ids: ["u1", "u2"], feature_service: "user_model@1" }, key);
      expect(many.body.results[1].metadata["user_stats:age"].status).toBe("not_found");

      const svc = await s.post(S, { name: "fraud", version: 1, features: ["user_stats:*", "merchant_stats:risk"], description: "fraud model" }, key);
      expect(svc.status).toBe(201);
      expect(svc.body.feature_service).toMatchObject({ name: "fraud", version: 1, features: ["user_stats:*", "merchant_stats:risk"] });
      const spans = await s.post(O, { entity_id: "u1", feature_service: "fraud" }, key);
      expect(spans.status).toBe(400);
      expect(spans.body.detail).toContain("entity_rows");
      const rows = await s.post(O, { entity_rows: [{ user: "u1", merchant: "m1" }, { user: "u9", merchant: "m1" }], feature_service: "fraud" }, key);
      expect(rows.status).toBe(200);
      expect(rows.body.results[0]).toEqual({
        entities: { user: "u1", merchant: "m1" },
        features: { "user_stats:age": 31, "user_stats:ltv": 9.5, "merchant_stats:risk": 0.1 },
        metadata: {
          "user_stats:age": { status: "present", event_time: "2024-01-15T09:58:00.000Z" },
          "user_stats:ltv": { status: "present", event_time: "2024-01-15T09:58:00.000Z" },
          "merchant_stats:risk": { status: "present", event_time: "2024-01-15T09:58:00.000Z" },
        },
      });
      expect(rows.body.results[1].features).toEqual({ "user_stats:age": null, "user_stats:ltv": null, "merchant_stats:risk": 0.1 });
      const missing = await s.post(O, { entity_rows: [{ user: "u1" }], feature_service: "fraud" }, key);
      expect(missing.status).toBe(400);
      expect(missing.body.errors).toEqual([{ path: "entity_rows[0]", message: "missing entity type merchant" }]);
      const both = await s.post(O, { entity_rows: [{ user: "u1" }], feature_service: "fraud", feature_names: ["age"] }, key);
      expect(both.status).toBe(400);
      const mixed = await s.post(O, { entity_rows: [{ user: "u1" }], entity_id: "u1", feature_service: "user_model" }, key);
      expect(mixed.status).toBe(400);
      expect(mixed.body.errors[0].path).toBe("entity_id");
      const namesToo = await s.post(O, { entity_id: "u1", feature_service: "user_model", feature_names: ["age"] }, key);
      expect(namesToo.status).toBe(400);
      expect(namesToo.body.errors[0].path).toBe("feature_names");
      const batchToo = await s.post(B, { entity_ids: ["u1"], feature_service: "user_model", feature_names: ["age"], timestamp: "2024-01-16T00:00:00Z" }, key);
      expect(batchToo.status).toBe(400);
      const ghost = await s.post(O, { entity_id: "u1", feature_service: "ghost" }, key);
      expect(ghost.status).toBe(404);
      expect(ghost.body.detail).toBe('unknown feature service "ghost"');
    });

    test("feature_service in batch requests", async () => {
      const { key } = await setup();
      await s.post(S, { name: "user_model", version: 1, features: ["user_stats:age", "ltv"] }, key);
      const r = await s.post(B, { entity_ids: ["u1"], feature_service: "user_model", timestamp: "2024-01-16T00:00:00Z" }, key);
      expect(r.status).toBe(200);
      expect(r.body.results[0].features).toEqual({ "user_stats:age": 31, ltv: 9.5 });
      const before = await s.post(B, { rows: [{ entity_id: "u1", timestamp: "2024-01-01T00:00:00Z" }], feature_service: "user_model" }, key);
      expect(before.body.results[0].metadata.ltv.status).toBe("not_found");
    });

    test("scopes and tenants: views need admin to register; another tenant sees none", async () => {
      const { tenant, key } = await setup();
      const read = await s.key(tenant, ["read"]);
      const write = await s.key(tenant, ["write"]);
      expect((await s.post(V, { name: "x", version: 1, entity_type: "user", features: ["age"] }, write)).status).toBe(403);
      expect((await s.post(S, { name: "x", version: 1, features: ["age"] }, read)).status).toBe(403);
      expect((await s.get("/api/v1/feature-views", read)).status).toBe(200);
      expect((await s.post(V, { name: "x", version: 1, entity_type: "user", features: ["age"] })).status).toBe(401);
      const other = await setup();
      await s.post(S, { name: "mine", version: 1, features: ["age"] }, key);
      expect((await s.post(O, { entity_id: "u1", feature_service: "mine" }, other.key)).status).toBe(404);
      expect((await s.get("/api/v1/feature-services/mine", other.key)).status).toBe(404);
    });
  });
});
