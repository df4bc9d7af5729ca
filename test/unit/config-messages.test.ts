/**
 * Configuration errors as a user reads them: one line naming the setting (or the flag that set
 * it), saying what is expected and what was given, never zod's own wording ("received NaN").
 */
import { describe, expect, test } from "bun:test";
import { ConfigError, ConfigSchema, loadConfig } from "../../src/config.ts";

function errorOf(env: Record<string, string>, flags: Record<string, string> = {}): string | undefined {
  try {
    loadConfig(env, flags);
    return undefined;
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
}

const SECRETS = new Set(["POSTGRES_URL", "REDIS_URL", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"]);

describe("configuration messages", () => {
  test("every setting refusing a value says what it expects, in one line, in the user's words", () => {
    let refused = 0;
    for (const key of Object.keys(ConfigSchema.shape)) {
      for (const bad of ["abc", "-5", "1.5", "1e400", "99999999999"]) {
        const msg = errorOf({ [key]: bad });
        if (msg === undefined) continue;
        refused++;
        expect([key, bad, msg.startsWith(`${key}: `)]).toEqual([key, bad, true]);
        expect(msg).not.toContain("\n");
        expect(msg).not.toMatch(/NaN|Infinity|Invalid input|received/);
        if (!SECRETS.has(key)) expect([key, msg.endsWith(`, got ${JSON.stringify(bad)}`)]).toEqual([key, true]);
      }
    }
    expect(refused).toBeGreaterThan(50);
  });

  test("numeric settings name their range", () => {
    expect(errorOf({ PORT: "abc" })).toBe('PORT: expected an integer from 0 to 65535, got "abc"');
    expect(errorOf({ PORT: "1.5" })).toBe('PORT: expected an integer from 0 to 65535, got "1.5"');
    expect(errorOf({ WORKER_METRICS_PORT: "70000" })).toBe('WORKER_METRICS_PORT: expected an integer from 0 to 65535, got "70000"');
    expect(errorOf({ BODY_LIMIT_BYTES: "0" })).toBe('BODY_LIMIT_BYTES: expected an integer >= 1, got "0"');
    expect(errorOf({ MAX_IN_FLIGHT: "many" })).toBe('MAX_IN_FLIGHT: expected an integer >= 0, got "many"');
    expect(errorOf({ SHUTDOWN_TIMEOUT: "soon" })).toBe('SHUTDOWN_TIMEOUT: expected a number >= 0, got "soon"');
    expect(errorOf({ POSTGRES_POOL_SIZE: "0" })).toBe('POSTGRES_POOL_SIZE: expected an integer from 1 to 1000, got "0"');
    expect(loadConfig({ PORT: " 9000 ", SHUTDOWN_TIMEOUT: "2.5" })).toMatchObject({ PORT: 9000, SHUTDOWN_TIMEOUT: 2.5 });
  });

  test("a value given as a flag blames the flag", () => {
    expect(errorOf({}, { PORT: "99999" })).toBe('--port: expected an integer from 0 to 65535, got "99999"');
    expect(errorOf({ PORT: "99999" }, { PORT: "80" })).toBeUndefined();
    expect(errorOf({ PORT: "99999" })).toStartWith("PORT: ");
    expect(errorOf({}, { HOST: "999.1.1.1" })).toStartWith("--host: expected an IP address");
  });

  test("HOST is an IP address or a host name", () => {
    for (const ok of ["0.0.0.0", "127.0.0.1", "::", "::1", "localhost", "db.internal", "my-host.example.com."]) expect([ok, errorOf({ HOST: ok })]).toEqual([ok, undefined]);
    for (const bad of ["999.1.1.1", "1.2.3.4.5", "-x", "a_b", "host:80", "http://x", " "]) expect(errorOf({ HOST: bad })).toStartWith("HOST: expected an IP address");
  });

  test("enumerations list their choices", () => {
    expect(errorOf({ LOG_LEVEL: "loud" })).toBe('LOG_LEVEL: expected one of fatal, error, warn, info, debug, trace, silent, got "loud"');
  });
});
