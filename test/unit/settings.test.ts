/**
 * src/settings.ts (the settings read without zod, at the start of `serve`) against
 * src/config.ts's zod schema: for every field and a corpus of texts, both accept the same
 * texts and give the same value; whatever loadConfig refuses, fastConfig refuses too.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigSchema, loadConfig } from "../../src/config.ts";
import { fastConfig, SETTING_NAMES } from "../../src/settings.ts";

const CORPUS = [
  undefined, "", " ", "0", "1", "-1", "2", "7", "8", " 8000 ", "65535", "65536", "1.5", "1e3", "0x10", "Infinity", "NaN", "abc", "999", "1000", "1001",
  "3600000", "3600001", "256", "257", "9007199254740993", "true", "FALSE", " yes ", "on", "Off", "no", "maybe", "info", " WARN ", "Debug", "silent", "verbose",
  "plain", "SCRAM-SHA-256", "scram-sha-512", "gssapi", "0.0.0.0", "127.0.0.1", "::", "::1", "fe80::1%eth0", "localhost", "db.internal", "999.1.1.1", "-bad-",
  "a..b", "host_name", "postgres://u:p@h:5432/db", "postgresql://h/db", " postgres://h/db ", "mysql://h/db", "redis://h:6379", "rediss://h", "redis://a,redis://b",
  "http://h", "./data", "/var/lib/fs", "  spaced  ", "30s", "5m", "2h", "1d", "500ms", "1.5h", "300", " 10S ", "5 m", "-5m", "1w", "99999999999999999d", "ümlaut",
];

describe("fastConfig reads every setting as loadConfig does", () => {
  test("the same settings, in the same order", () => {
    expect(SETTING_NAMES).toEqual(Object.keys(ConfigSchema.shape) as typeof SETTING_NAMES);
  });

  test("defaults", () => {
    expect(fastConfig({})).toEqual(loadConfig({}));
  });

  for (const name of Object.keys(ConfigSchema.shape)) {
    test(name, () => {
      for (const v of CORPUS) {
        const env = { [name]: v };
        let expected: unknown;
        try {
          expected = loadConfig(env);
        } catch {
          expected = undefined;
        }
        expect({ v, got: fastConfig(env) }).toEqual({ v, got: expected as ReturnType<typeof fastConfig> });
      }
    });
  }

  test("flags over the environment, and X_FILE secrets", () => {
    const dir = mkdtempSync(join(tmpdir(), "fs-settings-"));
    try {
      const file = join(dir, "url");
      writeFileSync(file, " redis://secret:6379 \n");
      const env = { PORT: "1", REDIS_URL_FILE: file, POSTGRES_URL_FILE: join(dir, "missing") };
      expect(() => loadConfig(env)).toThrow();
      expect(fastConfig(env)).toBeUndefined();
      const ok = { PORT: "1", REDIS_URL_FILE: file };
      expect(fastConfig(ok, { PORT: "2" })).toEqual(loadConfig(ok, { PORT: "2" }));
      expect(fastConfig(ok)?.REDIS_URL).toBe("redis://secret:6379");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
