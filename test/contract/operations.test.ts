/** Contract suite (../shared/API.md), health, readiness, metrics, the OpenAPI document and changes made by other processes; on every backend (see ./support.ts). */
import { describe, expect, test } from "bun:test";
import { TestServer } from "../support/backends.ts";
import { B, contractOn, O, R, W } from "./support.ts";

contractOn(({ backend, s }) => {
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
