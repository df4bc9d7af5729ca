/**
 * The dependencies the serving layer works with, built once per process (cmd/serve.ts,
 * cmd/worker.ts, CLI commands) and passed down explicitly.
 */
import type { Config } from "../config.ts";
import { AppError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import type { Clock } from "../lib/time.ts";
import { withTimeout } from "../lib/timeout.ts";
import { RegistrySnapshot } from "../registry/snapshot.ts";
import type { Database, OnlineCache } from "../store/types.ts";
import type { KeyRing } from "./keys.ts";

/** Holds the current registry snapshot; swapped whole on reload. */
export class RegistryHolder {
  current = new RegistrySnapshot([]);

  constructor(private readonly db: Database) {}

  /** Re-reads every definition, view and service. */
  async reload(): Promise<RegistrySnapshot> {
    const [defs, groups] = await Promise.all([this.db.loadDefinitions(), this.db.loadGroups()]);
    this.current = new RegistrySnapshot(defs, groups);
    return this.current;
  }
}

/** Everything a request or a message needs. */
export interface Deps {
  config: Config;
  db: Database;
  cache: OnlineCache;
  registry: RegistryHolder;
  keys: KeyRing;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
}

/**
 * Runs a database call with the configured timeout; any failure becomes a 503 `unavailable`
 * (logged with its cause, never shown to the client).
 */
export async function dbCall<T>(deps: Pick<Deps, "config" | "log">, what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await withTimeout(fn(), deps.config.STORE_TIMEOUT_MS, what);
  } catch (err) {
    if (err instanceof AppError) throw err;
    deps.log.warn({ err, op: what }, "database call failed");
    throw new AppError("unavailable", "the database is unavailable; try again shortly", { cause: err });
  }
}
