/**
 * The online answer is built as JSON text directly (src/serving/online.ts, lookupOnlineJsonNow):
 * on every backend, for every dtype, present / expired / not_found values, one entity and many,
 * its text is exactly JSON.stringify of the result objects of lookupOnline, cold (from the
 * database) and warm (from the cache, memoised).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { lookupOnline, lookupOnlineJsonNow } from "../../src/serving/online.ts";
import { SCALAR_TYPES } from "../../src/registry/dtype.ts";
import { HeldRow } from "../../src/store/held-row.ts";
import { contractBackends, TestServer } from "../support/backends.ts";

const SAMPLE: Record<string, unknown> = {
  bool: true,
  int32: -7,
  int64: "9007199254740993",
  float32: 0.1,
  float64: 1e-7,
  string: 'quote " backslash \\ ü 🙂 \u2028',
  bytes: "AAEC/w==",
  timestamp: "2024-01-15T10:00:00.123Z",
};

for (const backend of contractBackends()) {
  describe(`online JSON text on ${backend.name}`, () => {
    let s: TestServer;
    beforeAll(async () => {
      s = await TestServer.open(backend);
    });
    afterAll(async () => {
      await s.close();
    });

    test("equals JSON.stringify of the result objects, cold and warm, one entity and many", async () => {
      const tenant = TestServer.tenant();
      const key = await s.key(tenant, ["admin"]);
      const names: string[] = [];
      const features: Record<string, unknown> = {};
      for (const t of SCALAR_TYPES) {
        for (const list of [false, true]) {
          const name = `f_${t}${list ? "_list" : ""}`;
          names.push(name);
          const r = await s.post("/api/v1/features/register", { name, version: 1, dtype: `${t}${list ? "[]" : ""}`, entity_type: "user" }, key);
          expect(r.status).toBe(201);
          features[name] = list ? [SAMPLE[t], SAMPLE[t]] : SAMPLE[t];
        }
      }
      expect((await s.post("/api/v1/features/register", { name: "short", version: 1, dtype: "int32", entity_type: "user", ttl_hours: 1 }, key)).status).toBe(201);
      names.push("short", "f_int32@1");
      const w = await s.post("/api/v1/features/write", { entity_type: "user", records: [
        { entity_id: "u1", event_time: new Date().toISOString(), features },
        { entity_id: "u2", event_time: "2020-01-01T00:00:00Z", features: { short: 1, f_int32: 3 } },
      ] }, key);
      expect(w.status).toBe(200);
      const ids = ["u1", "u2", "nobody", "u1"];
      for (let pass = 0; pass < 2; pass++) {
        // pass 0 reads the database (cold), pass 1 the cache (warm, memoised)
        const objects = await lookupOnline(s.deps, tenant, ids, names);
        expect(await lookupOnlineJsonNow(s.deps, tenant, ids, names, true)).toBe(JSON.stringify({ results: objects }));
        expect(await lookupOnlineJsonNow(s.deps, tenant, ["u1"], names, false)).toBe(JSON.stringify(objects[0]));
        const http = await s.post("/api/v1/features/online", { entity_id: "u2", feature_names: names }, key);
        expect(http.text).toBe(JSON.stringify((await lookupOnline(s.deps, tenant, ["u2"], names))[0]));
        expect(http.headers.get("content-type")).toBe("application/json");
        expect(objects[1]?.metadata.short?.status).toBe("expired");
        expect(objects[2]?.metadata.f_bool?.status).toBe("not_found");
      }
      // The rows a store in this process holds carry the memo, and their bytes were decoded from a
      // copy: msgpackr leaves a DataView on the array it reads, which a held value would keep.
      const featureIds = names.map((n) => (s.deps.registry.current.resolve(tenant, n) as { kind: "ok"; def: { id: number } }).def.id);
      const keys = ["u1", "u2"].flatMap((entity_id) => featureIds.map((feature_id) => ({ feature_id, entity_id })));
      const held = (await s.deps.stores.online.getMany(tenant, "user", keys)).filter((r): r is HeldRow => r instanceof HeldRow);
      if (!s.deps.stores.online.capabilities.sharedAcrossProcesses) expect(held.length).toBeGreaterThan(0);
      for (const r of held) expect(Object.hasOwn(r.value, "dataView")).toBe(false);
    });

    /** The lookup outcomes and served-value ages counted so far (each series' value). */
    const outcomes = async (): Promise<Map<string, number>> => {
      const text = await s.deps.metrics.registry.metrics();
      const out = new Map<string, number>();
      for (const l of text.split("\n")) {
        const m = /^(feature_store_(?:lookups_total|served_value_age_seconds_(?:bucket|sum|count))\S*) (\S+)$/.exec(l);
        if (m) out.set(m[1] as string, Number(m[2]));
      }
      return out;
    };
    const delta = (a: Map<string, number>, b: Map<string, number>): Record<string, number> =>
      Object.fromEntries([...b].map(([k, v]) => [k, Math.round((v - (a.get(k) ?? 0)) * 1e6) / 1e6]).filter(([, d]) => d !== 0));

    test("a remembered entity's text follows expiry (either way), new writes, other spellings and tenants", async () => {
      const tenants = [TestServer.tenant(), TestServer.tenant()];
      const at = Date.now() - 30 * 60_000;
      for (const tenant of tenants) {
        const key = await s.key(tenant, ["admin"]);
        for (const [name, ttl] of [["soon", 1], ["long", null]] as const) {
          const r = await s.post("/api/v1/features/register", { name, version: 1, dtype: "int32", entity_type: "user", ...(ttl ? { ttl_hours: ttl } : {}) }, key);
          expect(r.status).toBe(201);
        }
        const w = await s.post("/api/v1/features/write", { entity_type: "user", records: [{ entity_id: "e1", event_time: new Date(at).toISOString(), features: { soon: tenant === tenants[0] ? 1 : 2, long: 3 } }] }, key);
        expect(w.status).toBe(200);
      }
      const clock = s.deps.clock;
      const same = async (tenant: string, names: string[], status: "present" | "expired"): Promise<void> => {
        // the clock stands still meanwhile: the ages each call observes are the same
        const now = s.deps.clock.now();
        const moving = s.deps.clock;
        s.deps.clock = { now: () => now };
        try {
          await sameAt(tenant, names, status);
        } finally {
          s.deps.clock = moving;
        }
      };
      const sameAt = async (tenant: string, names: string[], status: "present" | "expired"): Promise<void> => {
        for (let pass = 0; pass < 2; pass++) {
          const before = await outcomes();
          const objects = await lookupOnline(s.deps, tenant, ["e1", "e1"], names);
          const byObjects = delta(before, await outcomes());
          // the text (built, or remembered on the second pass) counts what the objects count
          const mid = await outcomes();
          expect(await lookupOnlineJsonNow(s.deps, tenant, ["e1", "e1"], names, true)).toBe(JSON.stringify({ results: objects }));
          expect(delta(mid, await outcomes())).toEqual(byObjects);
          expect(await lookupOnlineJsonNow(s.deps, tenant, ["e1"], names, false)).toBe(JSON.stringify(objects[0]));
          expect(objects[0]?.metadata[names[0] as string]?.status).toBe(status);
        }
      };
      try {
        const [t0, t1] = tenants as [string, string];
        await same(t0, ["soon", "long"], "present");
        await same(t0, ["soon@1", "long"], "present");
        await same(t1, ["soon", "long"], "present");
        s.deps.clock = { now: () => at + 2 * 3_600_000 };
        await same(t0, ["soon", "long"], "expired");
        s.deps.clock = clock;
        await same(t0, ["soon", "long"], "present");
        await same(t0, ["soon", "long", "soon@1"], "present");
        const key = await s.key(t0, ["admin"]);
        const w = await s.post("/api/v1/features/write", { entity_type: "user", records: [{ entity_id: "e1", event_time: new Date(at + 60_000).toISOString(), features: { long: 4 } }] }, key);
        expect(w.status).toBe(200);
        await same(t0, ["soon", "long"], "present");
        expect(JSON.parse(await lookupOnlineJsonNow(s.deps, t0, ["e1"], ["soon", "long"], false)).features).toEqual({ soon: 1, long: 4 });
      } finally {
        s.deps.clock = clock;
      }
    });
  });
}
