/**
 * Decoding a batch body: the schema parses each RFC 3339 timestamp into epoch milliseconds; a
 * bad one is a 400 "invalid timestamp" naming where it is, as when the handler parsed them.
 */
import { describe, expect, test } from "bun:test";
import { AppError } from "../../src/errors.ts";
import { contractRows } from "../../src/lane/frame-jobs.ts";

function problem(v: unknown): { detail: string; errors: unknown } {
  try {
    contractRows(v);
  } catch (e) {
    if (e instanceof AppError && e.code === "invalid_request") return { detail: e.message, errors: e.errors };
    throw e;
  }
  throw new Error("decoded");
}

describe("contractRows", () => {
  test("timestamps come out as epoch milliseconds (any offset, truncated to the millisecond)", () => {
    expect(contractRows({ entity_ids: ["a", "b"], feature_names: ["f"], timestamp: "2024-01-15T10:00:00.123456+02:00" })).toEqual({
      rows: [
        { entity_id: "a", at: Date.UTC(2024, 0, 15, 8, 0, 0, 123) },
        { entity_id: "b", at: Date.UTC(2024, 0, 15, 8, 0, 0, 123) },
      ],
      featureNames: ["f"],
    });
    expect(contractRows({ rows: [{ entity_id: "a", timestamp: "1970-01-01T00:00:01Z" }], feature_names: ["f"] }).rows).toEqual([{ entity_id: "a", at: 1000 }]);
  });

  test("a bad timestamp: 400 invalid timestamp, at its path", () => {
    const expected = (path: string) => ({ detail: "invalid timestamp", errors: [{ path, message: "expected an RFC 3339 timestamp" }] });
    expect(problem({ entity_ids: ["a"], feature_names: ["f"], timestamp: "2024-02-30T00:00:00Z" })).toEqual(expected("timestamp"));
    expect(problem({ entity_ids: ["a"], feature_names: ["f"], timestamp: "yesterday" })).toEqual(expected("timestamp"));
    const rows = [{ entity_id: "a", timestamp: "2024-01-01T00:00:00Z" }, { entity_id: "b", timestamp: "2024-01-01 25:00:00Z" }];
    expect(problem({ rows, feature_names: ["f"] })).toEqual(expected("rows[1].timestamp"));
  });

  test("with other schema errors the detail is the schema's; a timestamp of the wrong type is one of those", () => {
    const mixed = problem({ entity_ids: ["a"], feature_names: [], timestamp: "nope" });
    expect(mixed.detail).toBe("request does not match the schema");
    expect(mixed.errors).toContainEqual({ path: "feature_names", message: "must not be empty" });
    expect(problem({ entity_ids: ["a"], feature_names: ["f"], timestamp: 5 }).detail).toBe("request does not match the schema");
    expect(problem({ entity_ids: ["a"], feature_names: ["f"] })).toEqual({ detail: "request does not match the schema", errors: [{ path: "timestamp", message: "required" }] });
  });
});
