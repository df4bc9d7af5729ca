import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { convertFeastDump, dtypeOfFeast } from "../../src/registry/feast-dump.ts";

/** What `feast registry-dump` (feast 0.67.0) printed for a repo with views of five entities, a service and an on-demand view. */
const DUMP = readFileSync(join(import.meta.dir, "fixtures/feast-registry-dump.json"), "utf8");

describe("convertFeastDump", () => {
  test("types map to dtypes; a name clashing in dtype or ttl becomes a pinned version", () => {
    const imp = convertFeastDump(DUMP);
    expect(imp.project).toBe("demo");
    const extra = imp.feature_views.find((v) => v.name === "extra");
    expect(extra).toEqual({
      name: "extra", version: 1, entity_type: "driver", join_keys: ["driver_id"],
      features: ["emb", "flag", "seen", "blob", "small", "conv_rate@2"], description: "extra", owner: "ml@x", tags: { team: "ml" },
    });
    const dtypes = Object.fromEntries(imp.features.filter((f) => f.ttl_hours === 2).map((f) => [f.name, f.dtype]));
    expect(dtypes).toEqual({ emb: "float32[]", flag: "bool", seen: "timestamp", blob: "bytes", small: "int32", conv_rate: "float64" });
    expect(imp.features.filter((f) => f.name === "conv_rate").map((f) => [f.version, f.ttl_hours])).toEqual([[1, 87600], [2, 2]]);
  });

  test("composite keys, push sources, services; unsupported parts listed", () => {
    const imp = convertFeastDump(`some log line\n${DUMP}`);
    expect(imp.feature_views.find((v) => v.name === "pair_stats")).toMatchObject({ entity_type: "user_merchant", join_keys: ["user_id", "merchant_id"] });
    expect(imp.feature_views.find((v) => v.name === "driver_stats")?.push_source).toBe("driver_push");
    expect(imp.feature_services).toEqual([{ name: "ranking", version: 1, features: ["driver_stats:conv_rate", "driver_stats:trips", "driver_stats:old_score", "customer_stats:rating"] }]);
    expect(imp.unsupported[0]).toBe("on-demand feature view (a Python transformation) odfv: not supported");
    expect(imp.unsupported[1]).toStartWith("data sources customer_source, driver_push");
  });

  test("--no-ttl leaves ttl out; a clash across entity types is listed, not imported", () => {
    expect(convertFeastDump(DUMP, { ttl: false }).features.every((f) => f.ttl_hours === undefined)).toBe(true);
    const dump = {
      project: "p",
      entities: [{ spec: { name: "a", joinKey: "a_id" } }, { spec: { name: "b", joinKey: "b_id" } }],
      featureViews: [
        { spec: { name: "va", entities: ["a"], entityColumns: [{ name: "a_id" }], features: [{ name: "x", valueType: "INT64" }, { name: "m", valueType: "MAP" }] } },
        { spec: { name: "vb", entities: ["b"], entityColumns: [{ name: "b_id" }], features: [{ name: "x", valueType: "INT64" }, { name: "Y", valueType: "INT64" }] } },
      ],
      featureServices: [{ spec: { name: "s", features: [{ featureViewName: "vb", featureColumns: [{ name: "x" }] }] } }],
    };
    const imp = convertFeastDump(JSON.stringify(dump));
    expect(imp.features).toEqual([{ name: "x", version: 1, dtype: "int64", entity_type: "a" }]);
    expect(imp.unsupported).toEqual([
      "feature va:m: Feast type MAP has no dtype here",
      "feature vb:x: a feature x of entity type a exists (view va); feature names are unique per tenant across entity types",
      "feature vb:Y: name does not match ^[a-z][a-z0-9_]{0,127}$ (Feast clients refer to it by name, so it is not renamed)",
      "feature view vb: none of its features could be imported",
      "feature service s: refers to vb, which is not imported; the service is not imported",
    ]);
  });

  test("not a dump: a clear error", () => {
    expect(() => convertFeastDump("hello")).toThrow("not the JSON that `feast registry-dump` prints");
    expect(() => convertFeastDump("{}")).toThrow("no featureViews or entities");
    expect(dtypeOfFeast("STRING_LIST")).toBe("string[]");
    expect(dtypeOfFeast("UUID")).toBeUndefined();
  });
});
