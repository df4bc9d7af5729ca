import { describe, expect, test } from "bun:test";
import { decideCatalog, type GroupItem } from "../../src/serving/catalog.ts";
import type { RegisterItem } from "../../src/serving/register.ts";

const feature = (name: string, entity_type = "user"): RegisterItem => ({ input: { name, version: 1, dtype: "int64", entity_type } });
const view = (name: string, features: string[], entity_type = "user", join_keys?: string[]): GroupItem => ({
  input: { kind: "view", name, version: 1, spec: { entity_type, features, ...(join_keys ? { join_keys } : {}) } },
});
const service = (name: string, features: string[]): GroupItem => ({ input: { kind: "service", name, version: 1, spec: { features } } });

describe("decideCatalog", () => {
  test("features, a view of them and a service of the view, all in one registration", () => {
    const d = decideCatalog("t", [feature("a"), feature("b"), feature("r", "merchant")], [view("v", ["a", "b"]), view("m", ["r"], "merchant"), service("s", ["v:*", "m:r"])], [], [], 1);
    expect(d.ok).toBe(true);
    expect(d.outcomes.map((o) => `${o.kind} ${o.name} ${o.status}`)).toEqual(["feature a new", "feature b new", "feature r new", "view v new", "view m new", "service s new"]);
    expect(d.plan.groupInserts[0]?.spec).toEqual({ entity_type: "user", join_keys: ["user"], features: ["a", "b"] });
  });

  test("one bad item applies nothing; unknown references are listed", () => {
    const d = decideCatalog("t", [feature("a")], [view("v", ["a"]), service("s", ["v:a", "v:zz", "nope@2"])], [], [], 1);
    expect(d.ok).toBe(false);
    const bad = d.outcomes.find((o) => o.kind === "service");
    expect(bad).toMatchObject({ status: "invalid", unknown: ["v:zz", "nope@2"] });
  });

  test("a feature listed twice in a view, or of another entity type, is invalid", () => {
    const d = decideCatalog("t", [feature("a"), feature("r", "merchant")], [view("v", ["a", "a"]), view("w", ["a", "r"])], [], [], 1);
    expect(d.outcomes.slice(2).map((o) => o.reason)).toEqual(["a is listed twice", "r has entity type merchant, not user"]);
  });

  test("views of one entity type share join keys", () => {
    const d = decideCatalog("t", [feature("a")], [view("v", ["a"], "user", ["user_id"]), view("w", ["a"], "user", ["uid"])], [], [], 1);
    expect(d.outcomes[2]?.status).toBe("conflict");
  });
});
