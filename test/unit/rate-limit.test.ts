/** The sliding-window rate limiter on a fake clock (no I/O). */
import { describe, expect, test } from "bun:test";
import { RateLimiter } from "../../src/serving/rate-limit.ts";

describe("the sliding window (fake clock)", () => {
  test("allows the limit per window, refuses the rest with a Retry-After, and slides", async () => {
    let now = 1_000_000;
    const rl = new RateLimiter({ limit: 10, windowMs: 1000, now: () => now });
    const first = await Promise.all(Array.from({ length: 12 }, () => rl.check("k")));
    expect(first.filter((d) => d.allowed)).toHaveLength(10);
    const refused = first.filter((d) => !d.allowed);
    expect(refused).toHaveLength(2);
    for (const d of refused) {
      expect(d.remaining).toBe(0);
      expect(d.retryAfterMs).toBeGreaterThan(0);
      expect(d.retryAfterMs).toBeLessThanOrEqual(2000);
    }
    // another key has its own budget
    expect((await rl.check("other")).allowed).toBe(true);
    // half-way into the next window, half of the previous window still counts: 5 more fit
    now += 1500;
    const next = await Promise.all(Array.from({ length: 8 }, () => rl.check("k")));
    expect(next.filter((d) => d.allowed)).toHaveLength(5);
    // two windows later everything is forgotten
    now += 2000;
    expect((await Promise.all(Array.from({ length: 10 }, () => rl.check("k")))).every((d) => d.allowed)).toBe(true);
  });

  test("the Retry-After it gives is enough: a retry after it succeeds", async () => {
    let now = 5_000_250;
    const rl = new RateLimiter({ limit: 3, windowMs: 1000, now: () => now });
    for (let round = 0; round < 20; round++) {
      let d = await rl.check("k");
      while (d.allowed) d = await rl.check("k");
      now += d.retryAfterMs;
      expect((await rl.check("k")).allowed).toBe(true);
      now += 37 * round; // wander through the window
    }
  });

  test("a limit of 0 is off", async () => {
    const rl = new RateLimiter({ limit: 0, windowMs: 1000 });
    expect(rl.enabled).toBe(false);
    expect((await rl.check("k")).allowed).toBe(true);
  });
});
