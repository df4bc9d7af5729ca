/**
 * Feast's feature-server API (/api/v1/feast/...) on every backend: the column-oriented online
 * shape, writes and pushes of columnar frames, auth, scopes and errors.
 */
import { describe, expect, test } from "bun:test";
import { TestServer } from "../support/backends.ts";
import { contractOn } from "./support.ts";

const F = "/api/v1/feast";
const T = "2024-01-15T09:58:00Z";

contractOn(({ s }) => {
  describe("Feast API", () => {
    async function setup() {
      const tenant = TestServer.tenant();
      const key = await s.key(tenant, ["admin"]);
      for (const d of [
        { name: "conv_rate", dtype: "float64", entity_type: "driver" },
        { name: "trips", dtype: "int64", entity_type: "driver" },
        { name: "old", dtype: "int64", entity_type: "driver", ttl_hours: 1 },
        { name: "rating", dtype: "float32", entity_type: "customer" },
      ]) expect((await s.post("/api/v1/features/register", { version: 1, ...d }, key)).status).toBe(201);
      const views = [
        { name: "driver_stats", version: 1, entity_type: "driver", join_keys: ["driver_id"], features: ["conv_rate", "trips", "old"], push_source: "driver_push" },
        { name: "customer_stats", version: 1, entity_type: "customer", join_keys: ["customer_id"], features: ["rating"] },
      ];
      for (const v of views) expect((await s.post("/api/v1/feature-views/register", v, key)).status).toBe(201);
      const w = await s.post("/api/v1/features/write", { entity_type: "driver", records: [{ entity_id: "1001", event_time: T, features: { conv_rate: 0.5, trips: 7, old: 1 } }] }, key);
      expect(w.status).toBe(200);
      return { tenant, key };
    }

    test("get-online-features: Feast's column-oriented shape, statuses and timestamps", async () => {
      const { key } = await setup();
      const r = await s.post(`${F}/get-online-features`, { entities: { driver_id: [1001, 1002] }, features: ["driver_stats:conv_rate", "driver_stats:trips", "driver_stats:old"] }, key);
      expect(r.status).toBe(200);
      expect(r.body).toEqual({
        metadata: { feature_names: ["driver_id", "conv_rate", "trips", "old"] },
        results: [
          { values: [1001, 1002], statuses: ["PRESENT", "PRESENT"], event_timestamps: ["1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z"] },
          { values: [0.5, null], statuses: ["PRESENT", "NOT_FOUND"], event_timestamps: ["2024-01-15T09:58:00Z", "1970-01-01T00:00:00Z"] },
          { values: [7, null], statuses: ["PRESENT", "NOT_FOUND"], event_timestamps: ["2024-01-15T09:58:00Z", "1970-01-01T00:00:00Z"] },
          { values: [null, null], statuses: ["OUTSIDE_MAX_AGE", "NOT_FOUND"], event_timestamps: ["2024-01-15T09:58:00Z", "1970-01-01T00:00:00Z"] },
        ],
      });
      const full = await s.post(`${F}/get-online-features`, { entities: { driver_id: ["1001"] }, features: ["driver_stats:trips"], full_feature_names: true, include_feature_view_version_metadata: false }, key);
      expect(full.body.metadata.feature_names).toEqual(["driver_id", "driver_stats__trips"]);
    });

    test("feature services spanning entity types, one join key column each", async () => {
      const { key } = await setup();
      await s.post("/api/v1/features/write", { entity_type: "customer", records: [{ entity_id: "c1", event_time: T, features: { rating: 4.5 } }] }, key);
      expect((await s.post("/api/v1/feature-services/register", { name: "model", version: 1, features: ["driver_stats:trips", "customer_stats:*"] }, key)).status).toBe(201);
      const r = await s.post(`${F}/get-online-features`, { entities: { driver_id: [1001], customer_id: ["c1"] }, feature_service: "model" }, key);
      expect(r.status).toBe(200);
      expect(r.body.metadata.feature_names).toEqual(["driver_id", "customer_id", "trips", "rating"]);
      expect(r.body.results.map((c: { values: unknown[] }) => c.values[0])).toEqual([1001, "c1", 7, 4.5]);
      const missing = await s.post(`${F}/get-online-features`, { entities: { driver_id: [1001] }, feature_service: "model" }, key);
      expect(missing.status).toBe(400);
      expect(missing.body.detail).toContain("customer_id");
    });

    test("write-to-online-store and push write what the native API reads", async () => {
      const { key } = await setup();
      const w = await s.post(`${F}/write-to-online-store`, { feature_view_name: "driver_stats", df: { driver_id: [2001, 2002], conv_rate: [0.25, null], trips: [3, 4], event_timestamp: ["2024-02-01T00:00:00", "2024-02-01T00:00:00.5+00:00"], created: [null, null] } }, key);
      expect(w.status).toBe(200);
      expect(w.text).toBe("null");
      const p = await s.post(`${F}/push`, { push_source_name: "driver_push", df: { driver_id: ["2003"], trips: [9] }, to: "online_and_offline" }, key);
      expect(p.status).toBe(200);
      const r = await s.post("/api/v1/features/online", { entity_ids: ["2001", "2002", "2003"], feature_names: ["conv_rate", "trips"] }, key);
      expect(r.body.results.map((x: { features: unknown }) => x.features)).toEqual([
        { conv_rate: 0.25, trips: 3 },
        { conv_rate: null, trips: 4 },
        { conv_rate: null, trips: 9 },
      ]);
      expect(r.body.results[1].metadata.trips.event_time).toBe("2024-02-01T00:00:00.500Z");
      const offline = await s.post(`${F}/push`, { push_source_name: "driver_push", df: { driver_id: ["1"], trips: [1] }, to: "offline" }, key);
      expect(offline.status).toBe(400);
      const badCol = await s.post(`${F}/write-to-online-store`, { feature_view_name: "driver_stats", df: { driver_id: [1], nope: [1] } }, key);
      expect(badCol.status).toBe(400);
      expect(badCol.body.errors).toEqual([{ path: "df.nope", message: "not a join key or feature of driver_stats" }]);
      const badVal = await s.post(`${F}/write-to-online-store`, { feature_view_name: "driver_stats", df: { driver_id: [1], trips: ["x"] } }, key);
      expect(badVal.status).toBe(400);
      expect((await s.post(`${F}/write-to-online-store`, { feature_view_name: "ghost", df: { driver_id: [1] } }, key)).status).toBe(404);
      expect((await s.post(`${F}/push`, { push_source_name: "ghost", df: { driver_id: [1] } }, key)).status).toBe(404);
    });

    test("composite keys: several join key columns, canonical collision-free storage keys", async () => {
      const { key } = await setup();
      expect((await s.post("/api/v1/features/register", { name: "spend", version: 1, dtype: "int64", entity_type: "user_merchant" }, key)).status).toBe(201);
      const v = await s.post("/api/v1/feature-views/register", { name: "pair_stats", version: 1, entity_type: "user_merchant", join_keys: ["user_id", "merchant_id"], features: ["spend"] }, key);
      expect(v.status).toBe(201);
      const df = { user_id: ["a|b", "a", 7], merchant_id: ["c", "b|c", "x"], spend: [1, 2, 3], event_timestamp: [T, T, T] };
      expect((await s.post(`${F}/write-to-online-store`, { feature_view_name: "pair_stats", df }, key)).status).toBe(200);
      const feast = await s.post(`${F}/get-online-features`, { entities: { user_id: ["a", "a|b", "7", "a"], merchant_id: ["b|c", "c", "x", "b"] }, features: ["pair_stats:spend"] }, key);
      expect(feast.body.metadata.feature_names).toEqual(["user_id", "merchant_id", "spend"]);
      expect(feast.body.results[2].values).toEqual([2, 1, 3, null]);
      const rows = await s.post("/api/v1/features/online", { entity_rows: [{ user_merchant: { user_id: "a|b", merchant_id: "c" } }, { user_merchant: { merchant_id: "b|c", user_id: "a" } }], feature_names: ["spend"] }, key);
      expect(rows.body.results.map((r: { features: { spend: number } }) => r.features.spend)).toEqual([1, 2]);
      // the stored id is the JSON array of the values in join-key order, usable as entity_id
      const byId = await s.post("/api/v1/features/online", { entity_id: JSON.stringify(["a", "b|c"]), feature_names: ["pair_stats:spend"] }, key);
      expect(byId.body.features).toEqual({ "pair_stats:spend": 2 });
      const partial = await s.post("/api/v1/features/online", { entity_rows: [{ user_merchant: { user_id: "a" } }], feature_names: ["spend"] }, key);
      expect(partial.status).toBe(400);
      expect(partial.body.errors).toEqual([{ path: "entity_rows[0].user_merchant", message: "user_merchant is named by the join keys user_id, merchant_id" }]);
      const oneColumn = await s.post(`${F}/get-online-features`, { entities: { user_id: ["a"] }, features: ["pair_stats:spend"] }, key);
      expect(oneColumn.status).toBe(400);
      expect(oneColumn.body.detail).toContain("user_id, merchant_id");
    });

    test("auth, scopes, tenants and bad input", async () => {
      const { tenant, key } = await setup();
      const body = { entities: { driver_id: [1001] }, features: ["driver_stats:trips"] };
      expect((await s.post(`${F}/get-online-features`, body)).status).toBe(401);
      const read = await s.key(tenant, ["read"]);
      expect((await s.post(`${F}/get-online-features`, body, read)).status).toBe(200);
      expect((await s.call("GET", `${F}/health`, undefined, { headers: { authorization: `Bearer ${read}` } })).status).toBe(200);
      expect((await s.get(`${F}/health`)).status).toBe(401);
      expect((await s.post(`${F}/write-to-online-store`, { feature_view_name: "driver_stats", df: { driver_id: [1], trips: [1] } }, read)).status).toBe(403);
      expect((await s.post(`${F}/write-to-online-store`, { feature_view_name: "driver_stats", df: { driver_id: [5], trips: [99] } }, key)).status).toBe(200);
      const other = await setup();
      const mine = { entities: { driver_id: [5] }, features: ["driver_stats:trips"] };
      expect((await s.post(`${F}/get-online-features`, mine, key)).body.results[1].values).toEqual([99]);
      expect((await s.post(`${F}/get-online-features`, mine, other.key)).body.results[1].values).toEqual([null]);
      const uneven = await s.post(`${F}/get-online-features`, { entities: { driver_id: [1, 2], customer_id: ["c"] }, features: ["driver_stats:trips"] }, key);
      expect(uneven.status).toBe(400);
      const badId = await s.post(`${F}/get-online-features`, { entities: { driver_id: [1.5] }, features: ["driver_stats:trips"] }, key);
      expect(badId.status).toBe(400);
      expect(badId.body.errors[0].path).toBe("entities.driver_id[0]");
      const unknown = await s.post(`${F}/get-online-features`, { entities: { driver_id: [1] }, features: ["driver_stats:nope"] }, key);
      expect(unknown.status).toBe(404);
      const none = await s.post(`${F}/get-online-features`, { entities: { driver_id: [1] } }, key);
      expect(none.status).toBe(400);
    });
  });
});
