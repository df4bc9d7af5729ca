import type { Context, MiddlewareHandler } from "hono";
import { matchedRoutes } from "hono/route";
import { accessLogger, type Logger } from "../../log.ts";
import type { Metrics } from "../../metrics.ts";
import type { AppEnv } from "../env.ts";
import { requestIdOf } from "../healthz.ts";

export { requestIdOf };

/**
 * The outermost middleware, one function for what every request needs (one layer instead of
 * three on the hot path): the request id (the client's `X-Request-Id` when well-formed, else a
 * UUID; echoed in the response, as hono's requestId() does), `Connection: close` while the
 * server drains (keep-alive clients reconnect, and are refused cleanly once the listener is
 * closed, instead of sending on a connection about to go), and after the response the request
 * counted and timed by route template, and one access-log line.
 */
export function observe(metrics: Metrics, log: Logger, state: { draining: boolean }): MiddlewareHandler<AppEnv> {
  const access = accessLogger(log);
  return async (c, next) => {
    const start = performance.now();
    const id = requestIdOf(c.req.raw.headers.get("x-request-id"));
    c.set("requestId", id);
    c.header("X-Request-Id", id);
    c.set("route", "unmatched");
    await next();
    if (state.draining) c.res.headers.set("connection", "close");
    const seconds = (performance.now() - start) / 1000;
    const route = c.get("route") === "unmatched" ? templateOf(c) : c.get("route");
    const method = c.req.method;
    const status = c.res.status;
    metrics.observeRequest(route, method, status, seconds);
    access(id, method, route, status, Math.round(seconds * 1e6) / 1000);
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
