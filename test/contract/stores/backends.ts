/**
 * The backends the store-level contract suite runs against, one factory per backend. Each
 * role's suite (registry.test.ts, offline.test.ts, online.test.ts) runs the same cases on every
 * factory of its role, so every backend behaves the same through the interface. A new backend
 * is one more entry here.
 *
 * SQLite and the in-process store always run; PostgreSQL, Redis and Redis Cluster when the test
 * runner (scripts/test.ts) names them (TEST_POSTGRES_URL, TEST_REDIS_URL,
 * TEST_REDIS_CLUSTER_URLS), and in CI they are required (never skipped silently).
 */
import { afterAll } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { Metrics } from "../../../src/metrics.ts";
import { InProcessCache } from "../../../src/store/memory/online-cache.ts";
import { PostgresDatabase } from "../../../src/store/postgres/database.ts";
import { RedisCache } from "../../../src/store/redis/cache.ts";
import { SqliteDatabase } from "../../../src/store/sqlite/database.ts";
import type { Database, OnlineStore } from "../../../src/store/types.ts";
import { createDatabaseAt } from "../../harness/services.ts";

const log = pino({ level: "silent" });
const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

/** A system of record (registry + offline roles): `open` gives a fresh, migrated, empty one. */
export interface DatabaseFactory {
  name: string;
  /** A fresh store, and a way to open another instance on the same data (another process). */
  open(): Promise<{ db: Database; another(): Promise<Database> }>;
}

/** An online store: `open` gives a fresh, empty one. */
export interface OnlineFactory {
  name: string;
  open(): Promise<OnlineStore>;
}

const sqlite: DatabaseFactory = {
  name: "SQLite",
  async open() {
    const dir = mkdtempSync(join(tmpdir(), "fs-stores-"));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const make = async () => {
      const db = new SqliteDatabase({ dataDir: dir, pollIntervalMs: 20 });
      cleanups.push(() => db.close());
      await db.migrate();
      return db;
    };
    return { db: await make(), another: make };
  },
};

function postgresAt(server: string): DatabaseFactory {
  return {
    name: "PostgreSQL",
    async open() {
      const url = await createDatabaseAt(server);
      const make = async () => {
        const db = new PostgresDatabase({ url, log, retentionDays: 0, timeoutMs: 10_000 });
        cleanups.push(() => db.close());
        await db.migrate();
        return db;
      };
      return { db: await make(), another: make };
    },
  };
}

const inProcess: OnlineFactory = { name: "in-process", open: async () => new InProcessCache(100_000) };

function redisAt(name: string, url: string, cluster: boolean): OnlineFactory {
  return {
    name,
    async open() {
      const namespace = `fs-contract-${crypto.randomUUID().slice(0, 8)}`;
      const c = await RedisCache.connect({ url, cluster, log, metrics: new Metrics({ defaults: false }), timeoutMs: 2_000, namespace });
      cleanups.push(() => c.close());
      return c;
    },
  };
}

function required(): void {
  if (process.env.CI && !(process.env.TEST_POSTGRES_URL && process.env.TEST_REDIS_URL && process.env.TEST_REDIS_CLUSTER_URLS)) {
    throw new Error("CI must run the store contract suite on every backend: TEST_POSTGRES_URL, TEST_REDIS_URL and TEST_REDIS_CLUSTER_URLS are required (run via `npm test`)");
  }
}

/** Systems of record to run. */
export function databaseFactories(): DatabaseFactory[] {
  required();
  const pg = process.env.TEST_POSTGRES_URL;
  return [sqlite, ...(pg ? [postgresAt(pg)] : [])];
}

/** Online stores to run. */
export function onlineFactories(): OnlineFactory[] {
  required();
  const redis = process.env.TEST_REDIS_URL;
  const cluster = process.env.TEST_REDIS_CLUSTER_URLS;
  return [inProcess, ...(redis ? [redisAt("Redis", redis, false)] : []), ...(cluster ? [redisAt("Redis Cluster", cluster, true)] : [])];
}

/** Waits until `cond` holds (checked every 20 ms), failing after `timeoutMs`. */
export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await Bun.sleep(20);
  }
}
