/** Contract suite (../shared/API.md), authentication, scopes and tenant isolation on every route; on every backend (see ./support.ts). */
import { describe, expect, test } from "bun:test";
import { B, contractOn, expectProblem, O, R, W } from "./support.ts";

contractOn(({ s, setup }) => {
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
      const [row] = (await s.deps.stores.registry.listKeys(tenant)).filter((k) => key.startsWith(k.prefix));
      expect(await s.deps.stores.registry.revokeKey(row!.id, Date.now())).toBe(true);
      await s.deps.keys.reload();
      expectProblem(await s.get("/api/v1/features", key), 401, "unauthenticated");
    });
  });
});
