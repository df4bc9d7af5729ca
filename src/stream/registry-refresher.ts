/**
 * The worker's registry snapshot: reloaded when the change feed reports new definitions, and on
 * demand (rate-limited) when an event names a feature that may have been registered after the
 * snapshot was taken.
 */
import { dbCall, type Deps } from "../serving/deps.ts";

/** Fewest milliseconds between two on-demand registry reloads. */
const MIN_RELOAD_INTERVAL_MS = 250;

/**
 * Keeps the registry snapshot current: reloaded when the database reports new definitions, and
 * on demand (rate-limited) when an event names a feature that may have been registered after
 * the snapshot was taken.
 */
export class RegistryRefresher {
  /** when the current snapshot's reload started (it holds everything committed before) */
  private loadedAt: number;
  private lastStart = 0;

  constructor(private readonly deps: Deps) {
    this.loadedAt = deps.clock.now();
  }

  async reload(): Promise<void> {
    const started = this.deps.clock.now();
    this.lastStart = started;
    await this.deps.registry.reload();
    this.loadedAt = Math.max(this.loadedAt, started);
  }

  /** Reloads when the snapshot may predate `since` (epoch ms); true when it reloaded. */
  async refresh(since: number): Promise<boolean> {
    if (this.loadedAt > since) return false;
    const wait = this.lastStart + MIN_RELOAD_INTERVAL_MS - this.deps.clock.now();
    if (wait > 0) await Bun.sleep(wait);
    if (this.loadedAt > since) return true;
    await dbCall(this.deps, "registry reload", () => this.reload());
    return true;
  }
}
