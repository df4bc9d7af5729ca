/** validateRecords: every refused value names its record, field and a structured reason. */
import { describe, expect, test } from "bun:test";
import { loadConfig } from "../../src/config.ts";
import { AppError } from "../../src/errors.ts";
import { RegistrySnapshot } from "../../src/registry/snapshot.ts";
import { prepareRows, validateRecords } from "../../src/serving/write.ts";
import type { DefinitionRow } from "../../src/store/types.ts";

const def = (id: number, name: string, dtype: DefinitionRow["dtype"], entity_type: string): DefinitionRow => ({
  id, tenant: "acme", name, version: 1, dtype, entity_type, ttl_hours: null, description: null, owner: null, tags: {}, created_at: 0, updated_at: 0,
});
const T = Date.UTC(2025, 0, 1);
const deps = {
  registry: { current: new RegistrySnapshot([def(1, "clicks", "int64", "user"), def(2, "amount", "float64", "order")]) },
  clock: { now: () => Date.UTC(2025, 0, 3) },
  config: loadConfig({}),
};

describe("validateRecords", () => {
  test("valid records become rows, each with its definition", () => {
    const v = validateRecords(deps, "acme", "user", [{ entity_id: "u1", features: { clicks: 3 } }, { entity_id: "u2", event_time: "2025-01-02T00:00:00Z", features: { clicks: 4 } }], T);
    expect(v.ok && v.rows.map((r) => [r.feature_id, r.entity_id, r.event_time])).toEqual([[1, "u1", T], [1, "u2", Date.UTC(2025, 0, 2)]]);
    expect(v.ok && v.defs.map((d) => d.name)).toEqual(["clicks", "clicks"]);
  });

  test("each problem has a reason: unknown_feature, wrong_entity_type, bad_reference, bad_time (malformed or too far ahead), bad_value", () => {
    const v = validateRecords(
      deps,
      "acme",
      "user",
      [
        { entity_id: "a", features: { nope: 1 } },
        { entity_id: "b", features: { amount: 1.5 } },
        { entity_id: "c", features: { "Bad-Ref": 1 } },
        { entity_id: "d", event_time: "yesterday", features: { clicks: 1 } },
        { entity_id: "e", features: { clicks: 1.5 } },
        { entity_id: "f", event_time: "2025-02-01T00:00:00Z", features: { clicks: 1 } },
      ],
      T,
    );
    expect(v.ok).toBe(false);
    if (v.ok) return;
    expect(v.problems.map((p) => [p.record, p.field, p.reason])).toEqual([
      [0, "features.nope", "unknown_feature"],
      [1, "features.amount", "wrong_entity_type"],
      [2, "features.Bad-Ref", "bad_reference"],
      [3, "event_time", "bad_time"],
      [4, "features.clicks", "bad_value"],
      [5, "event_time", "bad_time"], // past MAX_FUTURE_SKEW
    ]);
    expect(v.problems[1]?.message).toBe("feature amount belongs to entity type order, not user");
  });

  test("prepareRows turns problems into one 400 with request paths", () => {
    try {
      prepareRows(deps, "acme", "user", [{ entity_id: "a", features: { clicks: 1 } }, { entity_id: "b", features: { nope: 1 } }], T);
      throw new Error("prepareRows accepted an unknown feature");
    } catch (e) {
      expect(e).toBeInstanceOf(AppError);
      expect((e as AppError).errors).toEqual([{ path: "records[1].features.nope", message: 'unknown feature "nope"' }]);
    }
  });
});
