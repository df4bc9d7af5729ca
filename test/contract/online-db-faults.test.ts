/**
 * An online lookup whose database read fails (what the cache lacks is read from the database):
 * a store that cannot answer now is a 503 `unavailable` with Retry-After; anything else is a bug,
 * a 500 `internal` that echoes nothing (never a 503, which clients retry forever, and never an
 * answer with values missing). Run on every backend, through the online fast path.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { StoreUnavailable } from "../../src/store/errors.ts";
import { contractBackends, TestServer } from "../support/backends.ts";
import { FaultyOfflineStore } from "../support/faulty-store.ts";

const O = "/api/v1/features/online";

for (const backend of contractBackends()) {
  describe(`online lookups whose database read fails, on ${backend.name}`, () => {
    let s: TestServer;
    let faulty: FaultyOfflineStore;
    let key: string;
    let n = 0;
    /** entity ids no lookup asked for yet: the cache lacks them, so the database is read */
    const fresh = (): string[] => [`u${++n}`, `u${++n}`];
    const lookup = (ids: string[]) => s.post(O, { entity_ids: ids, feature_names: ["score"] }, key);

    beforeAll(async () => {
      s = await TestServer.open(backend, { BULK_WORKERS: "0" });
      faulty = new FaultyOfflineStore(s.deps.stores.offline);
      s.deps.stores = { ...s.deps.stores, offline: faulty };
      const tenant = TestServer.tenant();
      key = await s.key(tenant, ["admin"]);
      expect((await s.post("/api/v1/features/register", { name: "score", version: 1, dtype: "int64", entity_type: "user" }, key)).status).toBe(201);
    });
    afterAll(async () => {
      faulty.latestFault = undefined;
      await s.close();
    });

    test("the database timing out or down: 503 unavailable problem with Retry-After", async () => {
      faulty.latestFault = () => new StoreUnavailable("test", "postgres latest lookup timed out after 2000 ms");
      const res = await lookup(fresh());
      faulty.latestFault = undefined;
      expect(res.status).toBe(503);
      expect(res.headers.get("content-type")).toContain("application/problem+json");
      expect(res.headers.get("retry-after")).toBeTruthy();
      expect(res.body.code).toBe("unavailable");
    });

    test("a bug in the database read (the session-7 TypeError): 500 internal, nothing echoed, not 503", async () => {
      faulty.latestFault = () => new TypeError("undefined is not an object (evaluating 'n.ord')");
      const res = await lookup(fresh());
      faulty.latestFault = undefined;
      expect(res.status).toBe(500);
      expect(res.headers.get("content-type")).toContain("application/problem+json");
      expect(res.body.code).toBe("internal");
      expect(res.text).not.toContain("ord");
      expect(res.body.request_id).toBeTruthy();
    });

    test("once the database reads work again, the same entities answer 200 with their values", async () => {
      const ids = fresh();
      faulty.latestFault = () => new TypeError("boom");
      expect((await lookup(ids)).status).toBe(500);
      faulty.latestFault = undefined;
      const w = await s.post("/api/v1/features/write", { entity_type: "user", records: [{ entity_id: ids[0], event_time: "2025-01-01T00:00:00Z", features: { score: 7 } }] }, key);
      expect(w.status).toBe(200);
      const res = await lookup(ids);
      expect(res.status).toBe(200);
      expect(res.body.results.map((r: { features: { score: unknown } }) => r.features.score)).toEqual([7, null]);
    });
  });
}
