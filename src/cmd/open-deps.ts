/**
 * Opening what a command works on: the configured database (DATA_DIR checked), migrations, and
 * the dependencies of a server (stores, registry snapshot, key ring). Apart from
 * cmd/common.ts so that `serve` opens its stores without loading the zod settings schema.
 */
import { accessSync, constants, existsSync, mkdirSync } from "node:fs";
import { resolve } from "node:path";
import type { Config } from "../config.ts";
import { createLogger, type Logger } from "../log.ts";
import { Metrics } from "../metrics.ts";
import { systemClock } from "../lib/time.ts";
import { RegistryHolder, type Deps } from "../serving/deps.ts";
import { KeyRing } from "../serving/keys.ts";
import type { Database, RegistryStore } from "../store/types.ts";
import { openDatabase, openOnlineStore, storesOf } from "../stores.ts";
import { CliError } from "./command.ts";

/** The embedded database's file under DATA_DIR (the name src/store/sqlite/database.ts gives it). */
const EMBEDDED_FILE = "feature-store.db";

/**
 * Where the configured database is, for people: the embedded SQLite file's absolute path, or
 * the PostgreSQL URL without user, password or query (`postgres://db.internal:5432/features`).
 */
export function databaseLocation(cfg: Config): string {
  if (!cfg.POSTGRES_URL) return resolve(cfg.DATA_DIR, EMBEDDED_FILE);
  // everything up to the last '@' goes first (a password may hold an unencoded '@', '/' or '?'), then the query
  return cfg.POSTGRES_URL.replace(/^([a-z]+:\/\/).*@/s, "$1").replace(/\?.*$/s, "");
}

const DIR_PROBLEMS: Record<string, string> = {
  EACCES: "permission denied",
  EPERM: "permission denied",
  EROFS: "read-only file system",
  ENOTDIR: "a part of the path is a file, not a directory",
  EEXIST: "it exists and is not a directory",
  ENOENT: "it does not exist and cannot be created",
};

/** DATA_DIR must be, or become, a writable directory: else one line naming it, exit 2. */
function checkDataDir(cfg: Config, file: string): void {
  try {
    mkdirSync(cfg.DATA_DIR, { recursive: true });
    accessSync(cfg.DATA_DIR, constants.W_OK | constants.X_OK);
    if (existsSync(file)) accessSync(file, constants.R_OK | constants.W_OK);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = DIR_PROBLEMS[err.code ?? ""] ?? err.message;
    throw new CliError(`configuration error: DATA_DIR: cannot keep the embedded database in ${resolve(cfg.DATA_DIR)}: ${why}`, 2);
  }
}

/** What a one-shot command tells its user on stderr when it opens the database. */
export interface Announce {
  /** print `database: LOCATION` (keys, register, migrate) */
  location: boolean;
  /** warn when this call created a new embedded database (every command but the services) */
  warnIfNew: boolean;
}

/** Services (serve, worker) log their database themselves and never warn. */
const QUIET: Announce = { location: false, warnIfNew: false };

/**
 * Opens the configured database (not yet migrated). Embedded, DATA_DIR problems are one line
 * naming DATA_DIR (exit 2). On stderr, as `announce` says: the location, and a warning when
 * this call created a new embedded database, since DATA_DIR defaults to ./data relative to the
 * working directory (a command run from another directory silently gets an empty database).
 */
export async function openConfiguredDatabase(cfg: Config, log: Logger, announce: Announce = QUIET): Promise<Database> {
  const location = databaseLocation(cfg);
  const embedded = !cfg.POSTGRES_URL;
  const isNew = embedded && !existsSync(location);
  if (embedded) checkDataDir(cfg, location);
  let db: Database;
  try {
    db = await openDatabase(cfg, log);
  } catch (e) {
    if (!embedded) throw e;
    throw new CliError(`configuration error: DATA_DIR: cannot open ${location}: ${(e as Error).message}`, 2);
  }
  if (announce.location) console.error(`database: ${location}`);
  if (announce.warnIfNew && isNew) {
    console.error(`warning: created a new, empty database at ${location} (DATA_DIR=${cfg.DATA_DIR}, working directory ${process.cwd()}); set DATA_DIR to use an existing one`);
  }
  return db;
}

/**
 * Builds Deps: opens the stores, checks (or, embedded, applies) migrations, loads snapshots.
 * `announce` (see {@link openConfiguredDatabase}): by default a command without a logger of its
 * own (register, seed) warns about a new embedded database, and the services (serve, worker),
 * which pass their logger, stay quiet.
 */
export async function buildDeps(
  cfg: Config,
  opts: { log?: Logger; fd?: 1 | 2; autoMigrateEmbedded?: boolean; defaultMetrics?: boolean; announce?: Announce; between?: () => Promise<void> } = {},
): Promise<Deps> {
  // `serve` passes nextTurn: a request that came in meanwhile is answered between two steps
  const between = opts.between ?? (async () => {});
  const log = opts.log ?? createLogger(cfg.LOG_LEVEL, opts.fd ?? 2);
  const metrics = new Metrics({ defaults: opts.defaultMetrics ?? false });
  await between();
  const db = await openConfiguredDatabase(cfg, log, opts.announce ?? { location: false, warnIfNew: opts.log === undefined });
  await between();
  try {
    await ensureMigrated(db, opts.autoMigrateEmbedded !== false);
  } catch (e) {
    await db.close().catch(() => {});
    throw new CliError(`${db.capabilities.embedded ? "database" : `database (${db.name})`}: ${(e as Error).message}`, 1);
  }
  await between();
  const stores = storesOf(db, await openOnlineStore(cfg, log, metrics));
  const registry = new RegistryHolder(db);
  const keys = new KeyRing(db, systemClock);
  await between();
  await registry.reload();
  await keys.reload();
  return { config: cfg, stores, registry, keys, clock: systemClock, log, metrics };
}

/**
 * Applies pending migrations to an embedded store (when `autoMigrate`), else checks that a
 * deployment ran `feature-store migrate`.
 */
export async function ensureMigrated(store: RegistryStore, autoMigrate = true): Promise<void> {
  if (store.capabilities.embedded && autoMigrate) await store.migrate();
  else await store.assertMigrated();
}

/** Closes the stores of a CLI command. */
export async function closeDeps(deps: Deps): Promise<void> {
  await deps.stores.close().catch(() => {});
}
