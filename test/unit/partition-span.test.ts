/** contiguousSpan: the gap-free run of monthly partitions around now (what as-of reads restrict to). */
import { describe, expect, test } from "bun:test";
import { contiguousSpan, monthStart } from "../../src/store/postgres/partitions.ts";

const NOW = Date.UTC(2025, 5, 15);
const month = (add: number) => ({ from: monthStart(NOW, add), to: monthStart(NOW, add + 1) });

describe("contiguousSpan", () => {
  test("the run of adjacent months containing now, in any order", () => {
    expect(contiguousSpan([month(1), month(-1), month(0), month(2)], NOW)).toEqual({ from: monthStart(NOW, -1), to: monthStart(NOW, 3) });
  });

  test("a gap ends the run on either side", () => {
    expect(contiguousSpan([month(-3), month(-1), month(0), month(1), month(3)], NOW)).toEqual({ from: monthStart(NOW, -1), to: monthStart(NOW, 2) });
  });

  test("no partition for this month: no span (reads search everything)", () => {
    expect(contiguousSpan([month(-1), month(1)], NOW)).toBeNull();
    expect(contiguousSpan([], NOW)).toBeNull();
  });
});
