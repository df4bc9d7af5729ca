/**
 * The dependencies the serving layer works with, built once per process (cmd/serve.ts,
 * cmd/worker.ts, CLI commands) and passed down explicitly.
 */
import type { Config } from "../config.ts";
import { AppError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import type { Clock } from "../lib/time.ts";
import { RegistrySnapshot } from "../registry/snapshot.ts";
import { isStoreUnavailable } from "../store/errors.ts";
import type { RegistryStore, Stores } from "../store/types.ts";
import type { KeyRing } from "./keys.ts";

/** Holds the current registry snapshot; swapped whole on reload. */
export class RegistryHolder {
  current = new RegistrySnapshot([]);
  /** reloads run one at a time, in order, so an older read never replaces a newer one */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly store: Pick<RegistryStore, "loadDefinitions" | "loadGroups">) {}

  /** Re-reads one tenant's definitions, views and services, or every tenant's. */
  reload(tenant?: string): Promise<RegistrySnapshot> {
    const run = async () => {
      const [rows, groups] = await Promise.all([this.store.loadDefinitions(tenant), this.store.loadGroups(tenant)]);
      this.current = tenant === undefined ? new RegistrySnapshot(rows, groups) : this.current.withTenant(tenant, rows, groups);
      return this.current;
    };
    const next = this.queue.then(run, run);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** Reloads the tenants a change names, or every tenant when it names none. */
  async reloadFor(tenants: readonly string[] | undefined): Promise<void> {
    if (tenants === undefined) await this.reload();
    else await Promise.all(tenants.map((t) => this.reload(t)));
  }
}

/** Everything a request or a message needs. */
export interface Deps {
  config: Config;
  /** the registry, offline and online stores */
  stores: Stores;
  registry: RegistryHolder;
  keys: KeyRing;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
}

/**
 * Runs a store call and says what failed: a store that cannot answer now
 * ({@link StoreUnavailable}, a timeout) becomes a 503 `unavailable` logged at warn; anything else
 * is a bug or a broken invariant, a 500 `internal` logged at error with its stack. Neither shows
 * the cause to the client. No timeout is added here: each backend applies its own, once.
 */
export async function dbCall<T>(deps: Pick<Deps, "log">, what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof AppError) throw err;
    if (isStoreUnavailable(err)) {
      deps.log.warn({ err, op: what }, "store unavailable");
      throw new AppError("unavailable", "the database is unavailable; try again shortly", { cause: err });
    }
    deps.log.error({ err, op: what }, "store call failed");
    throw new AppError("internal", "an internal error occurred", { cause: err });
  }
}
