import { describe, expect, test } from "bun:test";
import { decideRegistration, type RegisterInput } from "../../src/serving/register.ts";
import type { DefinitionRow } from "../../src/store/types.ts";

const base: RegisterInput = { name: "f", version: 1, dtype: "int32", entity_type: "user" };
const stored: DefinitionRow = { id: 1, tenant: "t", ...base, ttl_hours: null, description: null, owner: null, tags: {}, created_at: 1, updated_at: 1 };

describe("registration decisions", () => {
  test("new, unchanged, updated", () => {
    expect(decideRegistration("t", [{ input: { ...base, name: "g" } }], [stored], 5).outcomes[0]?.status).toBe("new");
    expect(decideRegistration("t", [{ input: base }], [stored], 5).outcomes[0]?.status).toBe("unchanged");
    const upd = decideRegistration("t", [{ input: { ...base, tags: { a: "b" } } }], [stored], 5);
    expect(upd.outcomes[0]?.status).toBe("updated");
    expect(upd.plan.updates).toEqual([{ id: 1, description: null, owner: null, tags: { a: "b" }, updated_at: 5 }]);
  });

  test("conflicts: dtype, ttl, entity type across versions; nothing applies when any conflicts", () => {
    const d = decideRegistration("t", [{ input: { ...base, name: "ok" } }, { input: { ...base, dtype: "int64" } }], [stored], 5);
    expect(d.outcomes.map((o) => o.status)).toEqual(["new", "conflict"]);
    expect(d.ok).toBe(false);
    expect(decideRegistration("t", [{ input: { ...base, ttl_hours: 1 } }], [stored], 5).outcomes[0]?.status).toBe("conflict");
    expect(decideRegistration("t", [{ input: { ...base, version: 2, entity_type: "item" } }], [stored], 5).outcomes[0]?.status).toBe("conflict");
  });

  test("definitions within one batch see each other", () => {
    const d = decideRegistration("t", [{ input: { ...base, name: "n" } }, { input: { ...base, name: "n", version: 2, entity_type: "item" } }, { input: { ...base, name: "n", description: "x" } }], [], 5);
    expect(d.outcomes.map((o) => o.status)).toEqual(["new", "conflict", "updated"]);
  });

  test("tag order does not matter", () => {
    const s = { ...stored, tags: { a: "1", b: "2" } };
    expect(decideRegistration("t", [{ input: { ...base, tags: { b: "2", a: "1" } } }], [s], 5).outcomes[0]?.status).toBe("unchanged");
  });
});
