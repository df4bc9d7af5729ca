/**
 * What every command shares: argument parsing with usage errors, configuration, and building
 * the dependencies (stores, registry snapshot, key ring) once per process.
 */
import { ConfigError, loadConfig, type Config } from "../config.ts";
import { CliError } from "./command.ts";

// what every command module uses (cli.ts imports them from command.ts alone, without the rest of this module)
export { CliError, parseFlags, UsageError, type Command } from "./command.ts";
export { buildDeps, closeDeps, databaseLocation, ensureMigrated, openConfiguredDatabase, type Announce } from "./open-deps.ts";

/** Configuration from flags over environment; a bad value is a one-line error, exit 2. */
export function config(flags: Partial<Record<keyof Config, string>> = {}): Config {
  try {
    return loadConfig(process.env, flags);
  } catch (e) {
    if (e instanceof ConfigError) throw new CliError(`configuration error: ${e.message}`, 2);
    throw e;
  }
}
