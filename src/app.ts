/**
 * createApp(deps): the HTTP API as a Hono app. No I/O here: everything it talks to comes in
 * through `deps`.
 */
import { OpenAPIHono } from "@hono/zod-openapi";
import { bodyLimit } from "hono/body-limit";
import { AppError } from "./errors.ts";
import type { Deps } from "./serving/deps.ts";
import type { AppEnv } from "./api/env.ts";
import { errorHandler, problemBody, problemResponse } from "./api/errors.ts";
import { authenticate } from "./api/middleware/auth.ts";
import { observe } from "./api/middleware/observe.ts";
import { rateLimit } from "./api/middleware/rate-limit.ts";
import { Admission, EventLoopLag, OnlineShed, shedWith } from "./api/middleware/shed.ts";
import { fastPath } from "./api/fast-online.ts";
import { accessLogger } from "./log.ts";
import { RateLimitMetrics } from "./metrics.ts";
import { RateLimiter } from "./serving/rate-limit.ts";
import { mountBatch } from "./api/routes/batch.ts";
import { laneForms } from "./api/routes/lane-forms.ts";
import { mountCatalog } from "./api/routes/catalog.ts";
import { mountFeast } from "./api/routes/feast/index.ts";
import { mountDefinitions } from "./api/routes/definitions.ts";
import { mountMaterialize } from "./api/routes/materialize.ts";
import { mountOnline } from "./api/routes/online.ts";
import { mountOps, type ServerState } from "./api/routes/ops.ts";
import { mountRegister } from "./api/routes/register.ts";
import { mountWrite } from "./api/routes/write.ts";
import { BulkLane, isBulkRoute, laneOptions } from "./lane/pool.ts";

export type { ServerState };

/** What `serve` builds for the app besides `deps`; each defaults to what the settings ask for. */
export interface AppOptions {
  /** Per-key rate limiter (default: counted in this process; `serve` passes the Redis-backed one). */
  rateLimiter?: RateLimiter;
  /** Admission control of /api/v1 (default: MAX_IN_FLIGHT, MAX_QUEUE, QUEUE_TIMEOUT_MS; the deadline and lag guard follow REQUEST_TIMEOUT_MS, MAX_EVENT_LOOP_LAG_MS). */
  admission?: Admission;
  /** The bulk lane (training queries and writes) (default: BULK_WORKERS threads, started on first use; `serve` passes its own to close it on shutdown). */
  lane?: BulkLane;
  /**
   * Answer `POST /api/v1/features/online` and `GET /healthz` outside the middleware chain
   * (api/fast-online.ts), through `app.fetch` and `app.request` (default true; false: every
   * request through the chain, which the fast path's tests compare it with).
   */
  fastPath?: boolean;
}

/** Builds the app. `state.draining` flips /readyz to 503 during shutdown. */
export function createApp(deps: Deps, state: ServerState = { draining: false }, version = "dev", opts: AppOptions = {}): OpenAPIHono<AppEnv> {
  const cfg = deps.config;
  const admission = opts.admission ?? new Admission({ maxInFlight: cfg.MAX_IN_FLIGHT, maxQueue: cfg.MAX_QUEUE, queueTimeoutMs: cfg.QUEUE_TIMEOUT_MS });
  const lane = opts.lane ?? new BulkLane(deps, { ...laneOptions(cfg), ...laneForms });
  const limiter = opts.rateLimiter ?? new RateLimiter({ limit: cfg.RATE_LIMIT_PER_KEY, windowMs: cfg.RATE_LIMIT_WINDOW_MS });
  const app = new OpenAPIHono<AppEnv>();
  // request id, Connection: close while draining, metrics and the access log
  app.use(observe(deps.metrics, deps.log, state));
  app.onError(errorHandler(deps.log));
  app.notFound((c) => {
    const path = new URL(c.req.url).pathname;
    const allowed = allowedMethods(app, path);
    // No route at all, or the method is routed but this exact path is not (`/api/v1/features/`): 404.
    if (allowed.length === 0 || allowed.includes(c.req.method)) return problemResponse(c, "not_found", `no route for ${c.req.method} ${path}`);
    // A known resource, another method: 405 with Allow (RFC 9110 15.5.6).
    const body = { ...problemBody("invalid_request", `${c.req.method} is not allowed on ${path}; allowed: ${allowed.join(", ")}`, c.get("requestId") ?? ""), status: 405, title: "Method not allowed" };
    return new Response(JSON.stringify(body), {
      status: 405,
      headers: { "content-type": "application/problem+json", allow: allowed.join(", "), "x-request-id": c.get("requestId") ?? "" },
    });
  });

  app.openAPIRegistry.registerComponent("securitySchemes", "ApiKeyHeader", { type: "apiKey", in: "header", name: "X-API-Key" });
  app.openAPIRegistry.registerComponent("securitySchemes", "BearerKey", { type: "http", scheme: "bearer" });

  mountOps(app, deps, state, version);

  // Overload is refused first and cheapest: before authentication and before the body is read.
  // Two lanes: the bulk routes are admitted by the bulk lane (their own slots and queue), never
  // counted against online lookups nor refused for event-loop lag.
  const online = new OnlineShed(admission, deps.metrics.registry, { requestTimeoutMs: cfg.REQUEST_TIMEOUT_MS, lag: new EventLoopLag(cfg.MAX_EVENT_LOOP_LAG_MS) });
  app.use(
    "/api/v1/*",
    shedWith(online, (c) => isBulkRoute(c.req.method, c.req.path)),
  );
  app.use("/api/v1/*", authenticate(deps.keys));
  const limitMetrics = limiter.enabled ? new RateLimitMetrics(deps.metrics.registry) : undefined;
  if (limitMetrics) app.use("/api/v1/*", rateLimit(limiter, limitMetrics));
  const maxBody = deps.config.BODY_LIMIT_BYTES;
  const tooLarge = (): never => {
    throw new AppError("payload_too_large", `request body is over the ${maxBody}-byte limit`);
  };
  // hono's bodyLimit touches `request.body` first, which makes Bun materialise a ReadableStream
  // for every request; with a Content-Length the header alone decides (Bun enforces it), and the
  // body is read once by the handler. Only bodies without a length (chunked) go through bodyLimit.
  const streamedLimit = bodyLimit({ maxSize: maxBody, onError: tooLarge });
  app.use("/api/v1/*", async (c, next) => {
    const length = c.req.header("content-length");
    if (length !== undefined && c.req.header("transfer-encoding") === undefined) {
      if (Number(length) > maxBody) tooLarge();
      return next();
    }
    return streamedLimit(c, next);
  });
  mountRegister(app, lane);
  mountWrite(app, lane);
  mountOnline(app, deps);
  mountBatch(app, lane);
  mountDefinitions(app, deps);
  mountMaterialize(app, deps, lane);
  mountCatalog(app, deps, lane);
  mountFeast(app, deps, lane);
  if (opts.fastPath !== false) {
    const fast = fastPath({ deps, state, shed: online, limiter, limitMetrics, access: accessLogger(deps.log), maxBody });
    const chain = app.fetch;
    app.fetch = (req, env, ctx) => fast(req) ?? chain(req, env, ctx);
  }
  return app;
}

const methodTables = new WeakMap<object, { re: RegExp; methods: string[]; literal: boolean }[]>();

/** The methods routed for `path` (HEAD with GET), from the app's own route table. */
function allowedMethods(app: OpenAPIHono<AppEnv>, path: string): string[] {
  let table = methodTables.get(app);
  if (table === undefined) {
    const byPath = new Map<string, Set<string>>();
    for (const r of app.routes) {
      if (r.method === "ALL" || r.path.includes("*")) continue;
      const set = byPath.get(r.path) ?? new Set<string>();
      set.add(r.method);
      if (r.method === "GET") set.add("HEAD");
      byPath.set(r.path, set);
    }
    table = [...byPath].map(([p, methods]) => ({
      re: new RegExp(`^${p.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/:\w+/g, "[^/]+")}/?$`),
      methods: [...methods].sort(),
      literal: !p.includes(":"),
    }));
    methodTables.set(app, table);
  }
  // As in OpenAPI, a concrete path (/api/v1/features/write) wins over a template (/api/v1/features/{name}).
  const matches = table.filter((t) => t.re.test(path));
  const best = matches.some((t) => t.literal) ? matches.filter((t) => t.literal) : matches;
  return [...new Set(best.flatMap((t) => t.methods))].sort();
}
