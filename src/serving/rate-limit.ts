/**
 * Per-API-key rate limiting: a sliding-window counter (the count of the current fixed window
 * plus the previous window's count weighted by how much of it still overlaps the sliding
 * window), which smooths the 2x burst a plain fixed window allows at its edges.
 *
 * The counts live in a {@link WindowStore}: Redis when configured, so every server of a fleet
 * shares one limit per key, else this process. A shared store that fails (down, slow, erroring)
 * never refuses a request: the limiter *fails open* to this process's own counts for a short
 * while (each server then enforces the limit on its own, so the fleet as a whole is never
 * stricter than configured) and tries the shared store again after `retryMs`.
 */
import type { Config } from "../config.ts";
import { withTimeout } from "../lib/timeout.ts";
import type { Logger } from "../log.ts";
import { openWindowStore } from "../stores.ts";
import type { WindowHit, WindowStore } from "../store/types.ts";

/** What the limiter decided for one request. */
export interface RateDecision {
  allowed: boolean;
  /** The configured limit per window. */
  limit: number;
  /** Requests left in the sliding window (0 when refused). */
  remaining: number;
  /** Milliseconds until a refused request may succeed (0 when allowed). */
  retryAfterMs: number;
}

export type { WindowHit, WindowStore } from "../store/types.ts";

/** The sliding-window test every store applies. */
export function fits(h: { cur: number; prev: number; elapsedMs: number }, limit: number, windowMs: number): boolean {
  return h.prev * (1 - h.elapsedMs / windowMs) + h.cur + 1 <= limit;
}

/** Settings of {@link RateLimiter}. */
export interface RateLimitOptions {
  /** Requests allowed per key per window; 0 disables limiting. */
  limit: number;
  /** Window length, ms. */
  windowMs: number;
  /** The shared store (Redis), if any. */
  shared?: WindowStore;
  /** Longest wait for the shared store, ms, before failing open. */
  sharedTimeoutMs?: number;
  /** After a shared-store failure, how long to count in process before trying it again, ms. */
  retryMs?: number;
  now?: () => number;
  /** Called once per switch to in-process counting (with the error) and back (undefined). */
  onFallback?: (err: unknown | undefined) => void;
}

/** Sliding-window counts of this process: a bounded map, pruned of idle ids. */
export class LocalWindowStore implements WindowStore {
  private readonly counts = new Map<string, { window: number; cur: number; prev: number }>();
  private lastPrune = 0;

  constructor(
    private readonly now: () => number = Date.now,
    private readonly maxIds = 100_000,
  ) {}

  async hit(id: string, limit: number, windowMs: number): Promise<WindowHit> {
    return this.hitSync(id, limit, windowMs);
  }

  /** Synchronous form of {@link hit}. */
  hitSync(id: string, limit: number, windowMs: number): WindowHit {
    const now = this.now();
    const window = Math.floor(now / windowMs);
    const elapsedMs = now - window * windowMs;
    let e = this.counts.get(id);
    if (e === undefined) {
      this.prune(window);
      e = { window, cur: 0, prev: 0 };
      this.counts.set(id, e);
    } else if (e.window !== window) {
      e.prev = e.window === window - 1 ? e.cur : 0;
      e.cur = 0;
      e.window = window;
    }
    const before = { allowed: false, cur: e.cur, prev: e.prev, elapsedMs };
    const allowed = fits(before, limit, windowMs);
    before.allowed = allowed;
    if (allowed) e.cur++;
    return before;
  }

  /** Drops ids idle for two windows; bounded memory whatever the number of keys. */
  private prune(window: number): void {
    if (this.counts.size < this.maxIds && window === this.lastPrune) return;
    this.lastPrune = window;
    for (const [id, e] of this.counts) if (e.window < window - 1) this.counts.delete(id);
    // Still full (that many keys active at once): forget the oldest entries.
    for (const id of this.counts.keys()) {
      if (this.counts.size < this.maxIds) break;
      this.counts.delete(id);
    }
  }

  async close(): Promise<void> {
    this.counts.clear();
  }
}

/** Per-key limiter over a shared store with an in-process fallback (see the module comment). */
export class RateLimiter {
  readonly limit: number;
  readonly windowMs: number;
  private readonly local: LocalWindowStore;
  private readonly shared: WindowStore | undefined;
  private readonly sharedTimeoutMs: number;
  private readonly retryMs: number;
  private readonly now: () => number;
  private readonly onFallback: (err: unknown | undefined) => void;
  /** While now < this, the shared store is skipped. */
  private localUntil = 0;
  private usingLocal = false;

  constructor(o: RateLimitOptions) {
    this.limit = o.limit;
    this.windowMs = o.windowMs;
    this.shared = o.shared;
    this.sharedTimeoutMs = o.sharedTimeoutMs ?? 50;
    this.retryMs = o.retryMs ?? 1000;
    this.now = o.now ?? Date.now;
    this.local = new LocalWindowStore(this.now);
    this.onFallback = o.onFallback ?? (() => {});
  }

  /** True when a limit is configured. */
  get enabled(): boolean {
    return this.limit > 0;
  }

  /** Whether the shared store is in use right now (false while failing open to local counts). */
  get sharedActive(): boolean {
    return this.shared !== undefined && !this.usingLocal;
  }

  /** Counts one request of `id` (an API key id) and says whether it may proceed. */
  async check(id: string): Promise<RateDecision> {
    if (!this.enabled) return { allowed: true, limit: 0, remaining: 0, retryAfterMs: 0 };
    const now = this.now();
    let r: WindowHit | undefined;
    if (this.shared !== undefined && now >= this.localUntil) {
      try {
        r = await withTimeout(this.shared.hit(id, this.limit, this.windowMs), this.sharedTimeoutMs, "rate limit store");
        if (this.usingLocal) {
          this.usingLocal = false;
          this.onFallback(undefined);
        }
      } catch (err) {
        this.localUntil = now + this.retryMs;
        if (!this.usingLocal) {
          this.usingLocal = true;
          this.onFallback(err);
        }
      }
    }
    r ??= this.local.hitSync(id, this.limit, this.windowMs);
    const used = r.prev * (1 - r.elapsedMs / this.windowMs) + r.cur + (r.allowed ? 1 : 0);
    return {
      allowed: r.allowed,
      limit: this.limit,
      remaining: Math.max(0, Math.floor(this.limit - used)),
      retryAfterMs: r.allowed ? 0 : this.retryAfter(r),
    };
  }

  /**
   * Time until one more request fits: the previous window's weight decays linearly, and the
   * current window's count becomes the previous one at the window's end.
   */
  private retryAfter(r: WindowHit): number {
    const w = this.windowMs;
    const left = w - r.elapsedMs;
    if (r.cur + 1 <= this.limit && r.prev > 0) {
      // Wait for the previous window's share to decay: prev * (w - elapsed - t) / w + cur + 1 <= limit.
      const t = left - ((this.limit - r.cur - 1) * w) / r.prev;
      return Math.max(1, Math.ceil(t));
    }
    // In the next window this window's count weighs `cur * (1 - e/w)`; wait until that leaves room.
    const e = r.cur > 0 ? Math.max(0, w - (this.limit - 1) * (w / r.cur)) : 0;
    return Math.max(1, Math.ceil(left + e));
  }

  async close(): Promise<void> {
    await this.local.close();
    await this.shared?.close();
  }
}

/**
 * The limiter the settings ask for: RATE_LIMIT_PER_KEY per RATE_LIMIT_WINDOW_MS, counted in
 * Redis when REDIS_URL is set (its own connection, opened in the background), else in this
 * process. Close it on shutdown.
 */
export async function openRateLimiter(
  cfg: Pick<Config, "RATE_LIMIT_PER_KEY" | "RATE_LIMIT_WINDOW_MS" | "REDIS_URL" | "REDIS_CLUSTER" | "STORE_TIMEOUT_MS">,
  log: Logger,
): Promise<RateLimiter> {
  const onFallback = (err: unknown) => {
    if (err === undefined) log.info("rate limiting: shared counts in Redis again");
    else log.warn({ err: err instanceof Error ? err.message : String(err) }, "rate limiting: Redis unavailable; counting in this process (fail open)");
  };
  const base = { limit: cfg.RATE_LIMIT_PER_KEY, windowMs: cfg.RATE_LIMIT_WINDOW_MS, onFallback };
  if (cfg.RATE_LIMIT_PER_KEY <= 0 || !cfg.REDIS_URL) return new RateLimiter(base);
  return new RateLimiter({ ...base, shared: await openWindowStore(cfg, log) });
}
