import type { Context, MiddlewareHandler } from "hono";
import { matchedRoutes } from "hono/route";
import { accessLogger, type Logger } from "../../log.ts";
import type { Metrics } from "../../metrics.ts";
import type { AppEnv } from "../env.ts";

/** Counts and times every request by route template, and writes one access-log line. */
export function observe(metrics: Metrics, log: Logger): MiddlewareHandler<AppEnv> {
  const access = accessLogger(log);
  return async (c, next) => {
    const start = performance.now();
    c.set("route", "unmatched");
    await next();
    const seconds = (performance.now() - start) / 1000;
    const route = c.get("route") === "unmatched" ? templateOf(c) : c.get("route");
    const method = c.req.method;
    const status = c.res.status;
    metrics.observeRequest(route, method, status, seconds);
    access(c.get("requestId"), method, route, status, Math.round(seconds * 1e6) / 1000);
  };
}

/** The route template a request matched, for requests answered before their handler ran (401s). */
function templateOf(c: Context<AppEnv>): string {
  const routes = matchedRoutes(c);
  for (let i = routes.length - 1; i >= 0; i--) {
    const r = routes[i];
    if (r && r.method !== "ALL") return r.path.replace(/:(\w+)/g, "{$1}");
  }
  return "unmatched";
}
