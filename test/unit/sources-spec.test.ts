import { describe, expect, test } from "bun:test";
import { parseDtype, type Dtype } from "../../src/registry/dtype.ts";
import { RegistrySnapshot } from "../../src/registry/snapshot.ts";
import { checkColumns, checkMapping, compatible, parseSources, type CheckedSource, type ColumnKind } from "../../src/sources/spec.ts";
import type { DefinitionRow } from "../../src/store/types.ts";

const def = (id: number, name: string, version: number, dtype: DefinitionRow["dtype"], entity_type: string): DefinitionRow => ({
  id, tenant: "acme", name, version, dtype, entity_type, ttl_hours: null, description: null, owner: null, tags: {}, created_at: 0, updated_at: 0,
});
const snapshot = new RegistrySnapshot([def(1, "user_age", 1, "int32", "user"), def(2, "user_age", 2, "int64", "user"), def(3, "item_price", 1, "float64", "item")]);
const base = { name: "s", kind: "parquet", path: "/data/x.parquet", entity_column: "id", event_time_column: "ts" };

describe("parseSources", () => {
  test("valid sources; relative paths are resolved against the file's directory", () => {
    const { specs, invalid } = parseSources([{ ...base, path: "parts/*.parquet", features: { age: "user_age" } }], "/defs/features.yaml");
    expect(invalid).toEqual([]);
    expect(specs[0]?.kind === "parquet" && specs[0].path).toBe("/defs/parts/*.parquet");
  });

  test("every mistake is named: unknown kind, unknown field, inline URL instead of a variable name, table and query both, duplicates", () => {
    const { invalid } = parseSources(
      [
        { ...base, kind: "delta", features: { a: "user_age" } },
        { ...base, name: "b", features: { a: "user_age" }, extra: 1 },
        { name: "c", kind: "postgres", url_env: "postgres://u:p@h/db", table: "t", entity_column: "id", event_time_column: "ts", features: { a: "user_age" } },
        { name: "d", kind: "postgres", url_env: "DB", table: "t", query: "select 1", entity_column: "id", event_time_column: "ts", features: { a: "user_age" } },
        { ...base, name: "e", features: {} },
        { ...base, name: "f", features: { a: "user_age" } },
        { ...base, name: "f", features: { a: "user_age" } },
      ],
      "/x.yaml",
    );
    expect(invalid.map((i) => i.name)).toEqual(["s", "b", "c", "d", "e", "f"]);
    expect(invalid[2]?.reason).toContain("must be an environment variable name");
    expect(invalid[3]?.reason).toContain("give exactly one of `table` and `query`");
    expect(invalid[5]?.reason).toBe("declared twice in this file");
    expect(parseSources({ a: 1 }, "/x.yaml").invalid[0]?.reason).toBe("expected a list");
  });
});

describe("checkMapping and checkColumns", () => {
  const spec = parseSources([{ ...base, features: { age: "user_age@1", price: "item_price" } }], "/x.yaml").specs[0]!;
  test("features of several entity types, unknown features and key columns mapped as features are refused", () => {
    expect(checkMapping(spec, "acme", snapshot, [])).toContain("several entity types (item, user)");
    const unknown = parseSources([{ ...base, features: { a: "nope" } }], "/x.yaml").specs[0]!;
    expect(checkMapping(unknown, "acme", snapshot, [])).toContain('unknown feature "nope"');
    expect(checkMapping(unknown, "other", snapshot, [{ name: "nope", version: 1, dtype: "bool", entity_type: "user" }])).toMatchObject({ entityType: "user" });
    const keyAsFeature = parseSources([{ ...base, features: { id: "user_age" } }], "/x.yaml").specs[0]!;
    expect(checkMapping(keyAsFeature, "acme", snapshot, [])).toContain("both a key column and a feature");
  });

  test("an unversioned reference checks against the highest version; columns must exist and fit", () => {
    const s = parseSources([{ ...base, features: { age: "user_age" } }], "/x.yaml").specs[0]!;
    const checked = checkMapping(s, "acme", snapshot, []) as CheckedSource;
    expect(checked.targets.get("age")?.dtype).toBe("int64");
    const cols = (m: Record<string, ColumnKind["kind"]>) => new Map(Object.entries(m).map(([k, v]) => [k, { kind: v } as ColumnKind]));
    expect(checkColumns(checked, cols({ id: "string", ts: "timestamp", age: "int" }))).toEqual([]);
    expect(checkColumns(checked, cols({ id: "float", ts: "int", age: "float" }))).toEqual([
      'entity column "id" is float; expected string or integer',
      'event time column "ts" is int; expected timestamp (or RFC 3339 text)',
      'feature user_age column "age" is float; expected something storable as int64',
    ]);
    expect(checkColumns(checked, cols({ id: "string", ts: "timestamp" }))[0]).toContain('feature user_age column "age" does not exist');
  });

  test("compatible kinds", () => {
    const d = (n: string) => parseDtype(n) as Dtype;
    expect(compatible({ kind: "int" }, d("float32"))).toBe(true);
    expect(compatible({ kind: "float" }, d("int32"))).toBe(false);
    expect(compatible({ kind: "list", of: { kind: "float" } }, d("float32[]"))).toBe(true);
    expect(compatible({ kind: "list", of: { kind: "string" } }, d("float32[]"))).toBe(false);
    expect(compatible({ kind: "string" }, d("int64[]"))).toBe(true);
    expect(compatible({ kind: "bytes" }, d("string"))).toBe(false);
    expect(compatible({ kind: "any" }, d("bool"))).toBe(true);
  });
});
