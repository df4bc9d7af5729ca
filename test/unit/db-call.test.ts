/** dbCall: a store outage is a 503, anything else a 500 logged at error (never the other way round). */
import { describe, expect, test } from "bun:test";
import pino from "pino";
import { AppError } from "../../src/errors.ts";
import { TimeoutError } from "../../src/lib/timeout.ts";
import { dbCall } from "../../src/serving/deps.ts";
import { StoreUnavailable } from "../../src/store/errors.ts";
import { RedisUnavailableError } from "../../src/store/redis/connection.ts";

function capture() {
  const lines: { level: number; msg: string; op?: string; err?: { stack?: string } }[] = [];
  const log = pino({ level: "debug" }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { log, lines };
}

async function code(err: unknown): Promise<{ code: string; levels: number[]; stack: boolean }> {
  const { log, lines } = capture();
  try {
    await dbCall({ log }, "write", () => Promise.reject(err));
    throw new Error("dbCall resolved");
  } catch (e) {
    if (!(e instanceof AppError)) throw e;
    return { code: e.code, levels: lines.map((l) => l.level), stack: lines.some((l) => (l.err?.stack ?? "").length > 0) };
  }
}

describe("dbCall", () => {
  test("a store that cannot answer (StoreUnavailable, Redis unavailable, timeout) is 503 unavailable, logged at warn", async () => {
    expect(await code(new StoreUnavailable("PostgreSQL", "connection refused"))).toEqual({ code: "unavailable", levels: [40], stack: true });
    expect(await code(new RedisUnavailableError("Redis Cluster is not connected"))).toEqual({ code: "unavailable", levels: [40], stack: true });
    expect(await code(new TimeoutError("x timed out"))).toEqual({ code: "unavailable", levels: [40], stack: true });
  });

  test("any other error is a bug: 500 internal, logged at error with its stack", async () => {
    expect(await code(new TypeError("cannot read properties of undefined"))).toEqual({ code: "internal", levels: [50], stack: true });
    expect(await code(Object.assign(new Error("duplicate key value violates unique constraint"), { code: "23505" }))).toEqual({ code: "internal", levels: [50], stack: true });
  });

  test("an AppError passes unchanged and unlogged", async () => {
    expect(await code(new AppError("not_found", "nope"))).toEqual({ code: "not_found", levels: [], stack: false });
  });

  test("a success returns the value", async () => {
    expect(await dbCall(capture(), "read", async () => 42)).toBe(42);
  });
});
