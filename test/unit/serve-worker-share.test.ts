/**
 * `serve --workers N`: each worker admits and opens its share of what one process would, so the
 * N workers together behave as one `serve` (src/cmd/serve.ts workerShare).
 */
import { describe, expect, test } from "bun:test";
import { workerShare } from "../../src/cmd/serve.ts";
import { loadConfig } from "../../src/config.ts";

describe("serve --workers N: per-worker shares", () => {
  test("the admission limits, bulk-lane threads and PostgreSQL pool are divided among the workers (rounded up, at least 1)", () => {
    const cfg = loadConfig({ MAX_IN_FLIGHT: "64", MAX_QUEUE: "1024", BULK_MAX_IN_FLIGHT: "4", BULK_MAX_QUEUE: "63", BULK_WORKERS: "1", POSTGRES_POOL_SIZE: "10", RATE_LIMIT_PER_KEY: "100" });
    const w = workerShare(cfg, 4);
    expect(w).toMatchObject({ MAX_IN_FLIGHT: 16, MAX_QUEUE: 256, BULK_MAX_IN_FLIGHT: 1, BULK_MAX_QUEUE: 16, BULK_WORKERS: 1, POSTGRES_POOL_SIZE: 3 });
    // the rate limit is shared (supervisor or Redis), never divided; everything else is as set
    expect(w.RATE_LIMIT_PER_KEY).toBe(100);
    expect(w.QUEUE_TIMEOUT_MS).toBe(cfg.QUEUE_TIMEOUT_MS);
  });

  test("0 (no limit, or the lane on the serving thread) stays 0; one worker keeps everything", () => {
    const cfg = loadConfig({ MAX_IN_FLIGHT: "0", BULK_WORKERS: "0", BULK_MAX_IN_FLIGHT: "0" });
    expect(workerShare(cfg, 2)).toMatchObject({ MAX_IN_FLIGHT: 0, BULK_WORKERS: 0, BULK_MAX_IN_FLIGHT: 0 });
    const one = loadConfig({ MAX_IN_FLIGHT: "7" });
    expect(workerShare(one, 1)).toEqual(one);
  });
});
