import { describe, expect, test } from "bun:test";
import { generateKey, hasScope, hashKey } from "../../src/serving/keys.ts";

describe("API keys", () => {
  test("only the hash is stored; the key is long and random", () => {
    const a = generateKey("t", ["read"], 0, null);
    const b = generateKey("t", ["read"], 0, null);
    expect(a.key).not.toBe(b.key);
    expect(a.key).toMatch(/^fs_[A-Za-z0-9_-]{43}$/);
    expect(a.row.hash).toBe(hashKey(a.key));
    expect(JSON.stringify(a.row)).not.toContain(a.key);
    expect(a.row.prefix).toBe(a.key.slice(0, 7));
  });

  test("scopes nest: admin > write > read", () => {
    expect(hasScope(["admin"], "read")).toBe(true);
    expect(hasScope(["admin"], "write")).toBe(true);
    expect(hasScope(["write"], "admin")).toBe(false);
    expect(hasScope(["read"], "write")).toBe(false);
    expect(hasScope([], "read")).toBe(false);
  });
});
