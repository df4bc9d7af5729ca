/**
 * Per-API-key rate limiting of the authenticated API (after `authenticate`, before the body is
 * read): over the limit, 429 `rate_limited` with `Retry-After`. Responses of limited routes
 * carry `RateLimit-Limit` and `RateLimit-Remaining`. Counts are per key id (never the key),
 * and no metric label holds a key or tenant.
 */
import type { MiddlewareHandler } from "hono";
import type { Registry } from "prom-client";
import { AppError } from "../../errors.ts";
import { RateLimitMetrics } from "../../metrics.ts";
import type { RateDecision, RateLimiter } from "../../serving/rate-limit.ts";
import type { AppEnv } from "../env.ts";

/** The 429 of a refused request (counted in `metrics`), to throw. */
export function rateLimited(limiter: RateLimiter, d: RateDecision, metrics: RateLimitMetrics): AppError {
  metrics.limited.inc();
  const seconds = String(Math.max(1, Math.ceil(d.retryAfterMs / 1000)));
  return new AppError("rate_limited", `this API key is over its rate limit of ${limiter.limit} requests per ${limiter.windowMs} ms; retry after ${seconds} s`, {
    headers: { "retry-after": seconds, "ratelimit-limit": String(limiter.limit), "ratelimit-remaining": "0" },
  });
}

/** Limits every request by its principal's key id (`metrics`: a registry, or the metrics shared with the online fast path). */
export function rateLimit(limiter: RateLimiter, metrics: Registry | RateLimitMetrics): MiddlewareHandler<AppEnv> {
  const m = metrics instanceof RateLimitMetrics ? metrics : new RateLimitMetrics(metrics);
  const limit = String(limiter.limit);
  return async (c, next) => {
    const d = await limiter.check(c.get("principal").keyId);
    if (!d.allowed) throw rateLimited(limiter, d, m);
    await next();
    c.res.headers.set("ratelimit-limit", limit);
    c.res.headers.set("ratelimit-remaining", String(d.remaining));
  };
}
