import { expect, test } from "bun:test";
import { resolve } from "node:path";
import { databaseLocation } from "../../src/cmd/common.ts";
import { loadConfig } from "../../src/config.ts";

test("the embedded database is named by the absolute path of its file", () => {
  expect(databaseLocation(loadConfig({}))).toBe(resolve("data/feature-store.db"));
  expect(databaseLocation(loadConfig({ DATA_DIR: "/srv/fs" }))).toBe("/srv/fs/feature-store.db");
});

test("PostgreSQL is named by host and database, never user, password or options", () => {
  expect(databaseLocation(loadConfig({ POSTGRES_URL: "postgres://fs:s3cret@db.internal:5432/features?sslmode=require&password=x" }))).toBe("postgres://db.internal:5432/features");
  expect(databaseLocation(loadConfig({ POSTGRES_URL: "postgresql://db/features" }))).toBe("postgresql://db/features");
  expect(databaseLocation(loadConfig({ POSTGRES_URL: "postgres://u:p@h1:5432,h2:5432/features" }))).toBe("postgres://h1:5432,h2:5432/features");
  // a password holding '@' or '/' (percent-encoding is not always used)
  expect(databaseLocation(loadConfig({ POSTGRES_URL: "postgres://u:p@ss/w@db:5432/features" }))).toBe("postgres://db:5432/features");
  expect(databaseLocation(loadConfig({ POSTGRES_URL: "postgres://u:pa?ss@db:5432/features" }))).toBe("postgres://db:5432/features");
});
