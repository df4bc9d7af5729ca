/**
 * A write that commits but is answered 503 (the store call timed out after the commit), then
 * re-sent by the client: the re-send stores nothing new, yet its values must reach the online
 * store, or an older cached value keeps being served. Run on every backend.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { StoreUnavailable } from "../../src/store/errors.ts";
import { contractBackends, TestServer } from "../support/backends.ts";
import { FaultyOfflineStore } from "../support/faulty-store.ts";

const W = "/api/v1/features/write";
const O = "/api/v1/features/online";

for (const backend of contractBackends()) {
  describe(`write path on ${backend.name}`, () => {
    let s: TestServer;
    let faulty: FaultyOfflineStore;
    beforeAll(async () => {
      // The fault is injected into this thread's offline store, so the bulk lane runs its jobs on
      // this thread (BULK_WORKERS=0: the same code as in a worker, with these stores).
      s = await TestServer.open(backend, { BULK_WORKERS: "0" });
      faulty = new FaultyOfflineStore(s.deps.stores.offline);
      s.deps.stores = { ...s.deps.stores, offline: faulty };
    });
    afterAll(async () => {
      faulty.fault = undefined;
      await s.close();
    });

    test("timed out after commit, then re-sent: the online store serves the new value", async () => {
      const tenant = TestServer.tenant();
      const key = await s.key(tenant, ["admin"]);
      expect((await s.post("/api/v1/features/register", { name: "score", version: 1, dtype: "int64", entity_type: "user" }, key)).status).toBe(201);
      const write = (score: number, at: string) => s.post(W, { entity_type: "user", records: [{ entity_id: "u1", event_time: at, features: { score } }] }, key);
      const read = async () => (await s.post(O, { entity_id: "u1", feature_names: ["score"] }, key)).body.features.score;

      expect((await write(1, "2025-01-01T00:00:00Z")).status).toBe(200);
      expect(await read()).toBe(1); // now cached

      // the store commits, then the call fails as a timeout would
      const inner = faulty.writeValues.bind(faulty);
      faulty.writeValues = async (rows) => {
        await inner(rows);
        throw new StoreUnavailable("test", "write values timed out after 2000 ms");
      };
      const lost = await write(2, "2025-01-02T00:00:00Z");
      expect(lost.status).toBe(503);
      expect(lost.body.code).toBe("unavailable");
      faulty.writeValues = inner;

      // the client retries the same write: nothing new to store, but the value reaches the online store
      const retried = await write(2, "2025-01-02T00:00:00Z");
      expect(retried.status).toBe(200);
      expect(await read()).toBe(2);
    });
  });
}
