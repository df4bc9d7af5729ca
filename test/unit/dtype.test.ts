import { describe, expect, test } from "bun:test";
import { coerceValue, decodeValue, DTYPES, encodeValue, parseDtype, shortestFloat32, toJsonValue, type DtypeName } from "../../src/registry/dtype.ts";

function roundTrip(dtype: DtypeName, input: unknown): unknown {
  const t = parseDtype(dtype);
  if (!t) throw new Error(dtype);
  const r = coerceValue(t, input);
  if (!r.ok) throw new Error(r.message);
  return toJsonValue(t, decodeValue(t, encodeValue(t, r.value)));
}

function rejects(dtype: DtypeName, input: unknown): string {
  const r = coerceValue(parseDtype(dtype)!, input);
  if (r.ok) throw new Error(`${dtype} accepted ${JSON.stringify(input)}`);
  return r.message;
}

describe("dtypes", () => {
  test("every scalar has a list form", () => {
    expect(DTYPES).toHaveLength(16);
    expect(parseDtype("float32[]")).toEqual({ name: "float32[]", scalar: "float32", list: true });
    expect(parseDtype("float32[][]")).toBeNull();
    expect(parseDtype("Float32")).toBeNull();
  });

  test("int64: numbers up to 2^53-1, decimal strings for the rest", () => {
    expect(roundTrip("int64", 9007199254740991)).toBe(9007199254740991);
    expect(roundTrip("int64", "9007199254740992")).toBe("9007199254740992");
    expect(roundTrip("int64", "-9223372036854775808")).toBe("-9223372036854775808");
    expect(roundTrip("int64", "+12")).toBe(12);
    expect(roundTrip("int64", "0012")).toBe(12);
    expect(rejects("int64", 9007199254740992)).toContain("decimal string");
    expect(rejects("int64", "9223372036854775808")).toContain("range");
    expect(rejects("int64", "1e3")).toBeString();
    expect(rejects("int64", 1.5)).toBeString();
  });

  test("float32: rounded to float32, served as the shortest decimal", () => {
    expect(roundTrip("float32", 0.1)).toBe(0.1);
    expect(roundTrip("float32", 1 / 3)).toBe(0.33333334);
    expect(roundTrip("float32", 3.4028234663852886e38)).toBe(3.4028235e38);
    expect(rejects("float32", 3.5e38)).toContain("range");
    expect(roundTrip("float32[]", [0.1, -2.5, 1e-45])).toEqual([0.1, -2.5, 1e-45]);
    expect(shortestFloat32(Math.fround(0.2))).toBe(0.2);
    expect(Object.is(roundTrip("float32", -0), 0)).toBe(true);
  });

  test("bytes are strict base64 with padding; timestamps normalise", () => {
    expect(roundTrip("bytes", "aGVsbG8=")).toBe("aGVsbG8=");
    expect(rejects("bytes", "aGVsbG8")).toContain("base64");
    expect(rejects("bytes", "aGVs bG8=")).toContain("base64");
    expect(roundTrip("timestamp", "2024-01-01T01:00:00+01:00")).toBe("2024-01-01T00:00:00.000Z");
    expect(rejects("timestamp", 1704067200000)).toContain("RFC 3339");
  });

  test("null is never a value, not even in a list; floats are finite; strings well-formed", () => {
    expect(rejects("int32", null)).toContain("null");
    expect(rejects("string[]", ["a", null])).toContain("[1]");
    expect(rejects("float64", "Infinity")).toBeString();
    expect(rejects("string", "\ud800")).toContain("surrogate");
    expect(rejects("bool", "true")).toBeString();
    expect(rejects("int32", 2 ** 31)).toContain("range");
  });

  test("identical values encode identically (re-send detection relies on it)", () => {
    const t = parseDtype("float64[]")!;
    const a = coerceValue(t, [1, 2.5]);
    const b = coerceValue(t, [1.0, 2.5]);
    if (!a.ok || !b.ok) throw new Error("coerce");
    expect(Buffer.from(encodeValue(t, a.value)).equals(Buffer.from(encodeValue(t, b.value)))).toBe(true);
  });
});
