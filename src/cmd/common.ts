/**
 * What every command shares: argument parsing with usage errors, configuration, and building
 * the dependencies (stores, registry snapshot, key ring) once per process.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { ConfigError, loadConfig, type Config } from "../config.ts";
import { createLogger, type Logger } from "../log.ts";
import { Metrics } from "../metrics.ts";
import { systemClock } from "../lib/time.ts";
import { RegistryHolder, type Deps } from "../serving/deps.ts";
import { KeyRing } from "../serving/keys.ts";
import type { RegistryStore } from "../store/types.ts";
import { openDatabase, openOnlineStore, storesOf } from "../stores.ts";

/** A usage error: help is printed and the process exits 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** A failure to report as one line (exit code given). */
export class CliError extends Error {
  override name = "CliError";
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

/** A command module's shape. */
export interface Command {
  /** one-line summary for the top-level help */
  summary: string;
  /** full help text */
  help: string;
  run(argv: string[]): Promise<number | void>;
}

/** util.parseArgs in strict mode; unknown flags and bad positionals are usage errors. */
export function parseFlags<T extends NonNullable<ParseArgsConfig["options"]>>(argv: string[], options: T, allowPositionals = false) {
  try {
    return parseArgs({ args: argv, options: { ...options, help: { type: "boolean", short: "h" } }, strict: true, allowPositionals });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** Configuration from flags over environment; a bad value is a one-line error, exit 2. */
export function config(flags: Partial<Record<keyof Config, string>> = {}): Config {
  try {
    return loadConfig(process.env, flags);
  } catch (e) {
    if (e instanceof ConfigError) throw new CliError(`configuration error: ${e.message}`, 2);
    throw e;
  }
}

/** Builds Deps: opens the stores, checks (or, embedded, applies) migrations, loads snapshots. */
export async function buildDeps(cfg: Config, opts: { log?: Logger; fd?: 1 | 2; autoMigrateEmbedded?: boolean; defaultMetrics?: boolean } = {}): Promise<Deps> {
  const log = opts.log ?? createLogger(cfg.LOG_LEVEL, opts.fd ?? 2);
  const metrics = new Metrics({ defaults: opts.defaultMetrics ?? false });
  const db = await openDatabase(cfg, log, metrics);
  try {
    await ensureMigrated(db, opts.autoMigrateEmbedded !== false);
  } catch (e) {
    await db.close().catch(() => {});
    throw new CliError(`${db.capabilities.embedded ? "database" : db.name}: ${(e as Error).message}`, 1);
  }
  const stores = storesOf(db, await openOnlineStore(cfg, log, metrics));
  const registry = new RegistryHolder(db);
  const keys = new KeyRing(db, systemClock);
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
