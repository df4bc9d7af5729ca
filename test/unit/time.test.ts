import { describe, expect, test } from "bun:test";
import { formatTime, parseTime } from "../../src/lib/time.ts";

describe("RFC 3339", () => {
  test("any offset, truncated to the millisecond, output in UTC", () => {
    expect(formatTime(parseTime("2024-01-15T10:00:00Z") as number)).toBe("2024-01-15T10:00:00.000Z");
    expect(formatTime(parseTime("2024-01-15T10:00:00.123987+02:00") as number)).toBe("2024-01-15T08:00:00.123Z");
    expect(formatTime(parseTime("2024-01-15t10:00:00.9-00:30") as number)).toBe("2024-01-15T10:30:00.900Z");
    expect(formatTime(parseTime("2024-02-29T23:59:59.999999999Z") as number)).toBe("2024-02-29T23:59:59.999Z");
  });

  test("rejects what is not an RFC 3339 date-time", () => {
    for (const s of ["2024-01-15", "2024-01-15T10:00:00", "2023-02-29T00:00:00Z", "2024-04-31T00:00:00Z", "2024-01-15T24:00:00Z", "2024-01-15T10:00:00+25:00", "1705312800", "", "2024-1-15T10:00:00Z", "0000-01-01T00:00:00+01:00"]) {
      expect([s, parseTime(s)]).toEqual([s, null]);
    }
  });

  test("the four-digit-year range is accepted", () => {
    expect(formatTime(parseTime("0000-01-01T00:00:00Z") as number)).toBe("0000-01-01T00:00:00.000Z");
    expect(formatTime(parseTime("9999-12-31T23:59:59.999Z") as number)).toBe("9999-12-31T23:59:59.999Z");
  });
});
