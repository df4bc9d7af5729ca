/**
 * Opens the configured stores: PostgreSQL when POSTGRES_URL is set, else the embedded SQLite
 * database under DATA_DIR; Redis when REDIS_URL is set, else the in-process cache.
 */
import type { Config } from "./config.ts";
import type { Logger } from "./log.ts";
import type { Metrics } from "./metrics.ts";
import { InProcessCache } from "./store/memory/online-cache.ts";
import { SqliteDatabase } from "./store/sqlite/database.ts";
import type { Database, OnlineCache } from "./store/types.ts";

/**
 * Opens the system-of-record database (not yet migrated or checked). `changeOrigin`: the
 * `changeOrigin` of this process's main connection, when opening a sibling (a bulk-lane worker).
 */
export async function openDatabase(config: Config, log: Logger, opts: { changeOrigin?: string | undefined } = {}): Promise<Database> {
  if (config.POSTGRES_URL) {
    const { PostgresDatabase } = await import("./store/postgres/database.ts");
    return new PostgresDatabase({
      url: config.POSTGRES_URL,
      log,
      retentionDays: config.RETENTION_DAYS,
      timeoutMs: config.STORE_TIMEOUT_MS,
      poolSize: config.POSTGRES_POOL_SIZE,
      ...(opts.changeOrigin !== undefined ? { origin: opts.changeOrigin } : {}),
    });
  }
  return new SqliteDatabase({ dataDir: config.DATA_DIR });
}

/** Opens the online cache. */
export async function openCache(config: Config, log: Logger, metrics: Metrics): Promise<OnlineCache> {
  if (config.REDIS_URL) {
    const { RedisCache } = await import("./store/redis/cache.ts");
    return RedisCache.connect({ url: config.REDIS_URL, cluster: config.REDIS_CLUSTER, log, metrics, timeoutMs: config.STORE_TIMEOUT_MS });
  }
  return new InProcessCache(config.CACHE_MAX_ENTRIES);
}
