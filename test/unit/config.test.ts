import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, loadConfig } from "../../src/config.ts";

describe("configuration", () => {
  test("defaults", () => {
    const c = loadConfig({});
    expect([c.PORT, c.HOST, c.DATA_DIR, c.POSTGRES_URL, c.REDIS_URL, c.BODY_LIMIT_BYTES, c.SHUTDOWN_TIMEOUT]).toEqual([8000, "0.0.0.0", "./data", undefined, undefined, 32 * 1024 * 1024, 10]);
  });

  test("flags override environment", () => {
    expect(loadConfig({ PORT: "9000" }, { PORT: "9100" }).PORT).toBe(9100);
  });

  test("a bad value names the variable in one line", () => {
    for (const [env, name] of [[{ PORT: "http" }, "PORT"], [{ LOG_LEVEL: "loud" }, "LOG_LEVEL"], [{ REDIS_URL: "localhost:6379" }, "REDIS_URL"], [{ SHUTDOWN_TIMEOUT: "-1" }, "SHUTDOWN_TIMEOUT"]] as const) {
      let err: unknown;
      try {
        loadConfig(env);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message.startsWith(`${name}:`)).toBe(true);
      expect((err as Error).message).not.toContain("\n");
    }
  });

  test("secrets from X_FILE, never echoed on error", () => {
    const dir = mkdtempSync(join(tmpdir(), "cfg-"));
    writeFileSync(join(dir, "pg"), "postgres://u:secret@db/fs\n");
    expect(loadConfig({ POSTGRES_URL_FILE: join(dir, "pg") }).POSTGRES_URL).toBe("postgres://u:secret@db/fs");
    writeFileSync(join(dir, "bad"), "mysql://u:secret@db\n");
    expect(() => loadConfig({ POSTGRES_URL_FILE: join(dir, "bad") })).toThrow(/^POSTGRES_URL: /);
    try {
      loadConfig({ POSTGRES_URL_FILE: join(dir, "bad") });
    } catch (e) {
      expect((e as Error).message).not.toContain("secret");
    }
    expect(() => loadConfig({ REDIS_URL_FILE: join(dir, "missing") })).toThrow(/REDIS_URL_FILE/);
  });
});
