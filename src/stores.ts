/**
 * Opens the configured stores. Each backend is one folder under src/store/ and one entry in a
 * factory list below; the first entry whose `configured` accepts the configuration is used.
 * Backends are imported lazily, so a process loads only the clients it needs.
 *
 * - system of record (the registry and offline roles, one backend): PostgreSQL when
 *   POSTGRES_URL is set, else the embedded SQLite database under DATA_DIR;
 * - online store: Redis (or Redis Cluster) when REDIS_URL is set, else in-process.
 *
 * Everything a backend needs comes from the configuration, so any thread or process (a Bun
 * Worker included) opens its own stores with `openStores(config, log, metrics)`.
 */
import type { Config } from "./config.ts";
import type { Logger } from "./log.ts";
import { Metrics } from "./metrics.ts";
import type { Database, OnlineStore, Stores, WindowStore } from "./store/types.ts";

/** What a backend's `open` gets besides the configuration. */
export interface OpenContext {
  log: Logger;
  metrics: Metrics;
  /** the `changeOrigin` of this process's main connection, when opening a sibling (a bulk-lane worker thread) */
  changeOrigin?: string | undefined;
  /** the `ownChangeLedger` of this process's main connection, when opening a sibling (SQLite) */
  ownChangeLedger?: SharedArrayBuffer | undefined;
}

/** One backend of one role: when it applies, and how to open it. */
export interface BackendFactory<T> {
  /** the backend's name (`postgres`, `redis`), as its stores report it */
  name: string;
  /** true when the configuration selects this backend */
  configured(config: Config): boolean;
  open(config: Config, ctx: OpenContext): Promise<T>;
}

/** Systems of record (registry + offline roles), most specific first; the last always applies. */
export const databaseBackends: readonly BackendFactory<Database>[] = [
  {
    name: "postgres",
    configured: (c) => c.POSTGRES_URL !== undefined && c.POSTGRES_URL !== "",
    async open(c, { log, changeOrigin }) {
      const { PostgresDatabase } = await import("./store/postgres/database.ts");
      return new PostgresDatabase({ url: c.POSTGRES_URL as string, log, retentionDays: c.RETENTION_DAYS, timeoutMs: c.STORE_TIMEOUT_MS, bulkTimeoutMs: c.BULK_STORE_TIMEOUT_MS, poolSize: c.POSTGRES_POOL_SIZE, origin: changeOrigin });
    },
  },
  {
    name: "sqlite",
    configured: () => true,
    async open(c, { ownChangeLedger }) {
      const { SqliteDatabase } = await import("./store/sqlite/database.ts");
      return new SqliteDatabase({ dataDir: c.DATA_DIR, ownChangeLedger });
    },
  },
];

/** Online stores, most specific first; the last always applies. */
export const onlineBackends: readonly BackendFactory<OnlineStore>[] = [
  {
    name: "redis",
    configured: (c) => c.REDIS_URL !== undefined && c.REDIS_URL !== "",
    async open(c, { log, metrics }) {
      const { RedisCache } = await import("./store/redis/cache.ts");
      return RedisCache.connect({ url: c.REDIS_URL as string, cluster: c.REDIS_CLUSTER, log, metrics, timeoutMs: c.STORE_TIMEOUT_MS, nearMaxValues: c.REDIS_NEAR_CACHE ? c.CACHE_MAX_ENTRIES : 0 });
    },
  },
  {
    name: "in_process",
    configured: () => true,
    async open(c) {
      const { InProcessCache } = await import("./store/memory/online-cache.ts");
      return new InProcessCache(c.CACHE_MAX_ENTRIES);
    },
  },
];

function pick<T>(list: readonly BackendFactory<T>[], config: Config): BackendFactory<T> {
  const f = list.find((b) => b.configured(config));
  if (!f) throw new Error("no store backend accepts this configuration");
  return f;
}

/** Opens the system of record (registry + offline roles; not yet migrated or checked). */
export function openDatabase(config: Config, log: Logger, metrics?: Metrics, opts: { changeOrigin?: string | undefined; ownChangeLedger?: SharedArrayBuffer | undefined } = {}): Promise<Database> {
  return pick(databaseBackends, config).open(config, { log, metrics: metrics ?? new Metrics({ defaults: false }), changeOrigin: opts.changeOrigin, ownChangeLedger: opts.ownChangeLedger });
}

/** Opens the online store. */
export function openOnlineStore(config: Config, log: Logger, metrics: Metrics): Promise<OnlineStore> {
  return pick(onlineBackends, config).open(config, { log, metrics });
}

/**
 * The shared rate-limit window store: Redis (its own connection, opened in the background) when
 * REDIS_URL is set; undefined otherwise (counts stay in each process).
 */
export async function openWindowStore(config: Pick<Config, "REDIS_URL" | "REDIS_CLUSTER" | "STORE_TIMEOUT_MS">, log: Logger): Promise<WindowStore | undefined> {
  if (!config.REDIS_URL) return undefined;
  const { RedisWindowStore } = await import("./store/redis/rate-counter.ts");
  return RedisWindowStore.open({ url: config.REDIS_URL, cluster: config.REDIS_CLUSTER, log, connectTimeoutMs: Math.max(config.STORE_TIMEOUT_MS, 500) });
}

/** The three roles over an opened system of record and online store; `close` closes each once. */
export function storesOf(db: Database, online: OnlineStore): Stores {
  return {
    registry: db,
    offline: db,
    online,
    async close() {
      // both are closed, in this order, even when the first fails; the first failure is reported
      let failure: unknown;
      for (const store of [online, db]) await store.close().catch((err: unknown) => (failure ??= err));
      if (failure !== undefined) throw failure;
    },
  };
}
