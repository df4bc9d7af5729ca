import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import type { Deps } from "../../serving/deps.ts";
import { checkReadiness } from "../../serving/health.ts";
import type { AppEnv } from "../env.ts";
import { jsonText, mount } from "../route.ts";
import { problemResponse } from "../errors.ts";
import { Readiness, ServiceIndex } from "../../schemas.ts";

/** Shared between the app and the lifecycle: set when SIGTERM starts the drain. */
export interface ServerState {
  draining: boolean;
}

const METRICS_EXAMPLE = `# HELP feature_store_http_requests_total HTTP requests by route, method and status.
# TYPE feature_store_http_requests_total counter
feature_store_http_requests_total{route="/api/v1/features/online",method="POST",status="200"} 1042
`;

const healthRoute = createRoute({
  method: "get",
  path: "/healthz",
  operationId: "healthz",
  tags: ["operations"],
  summary: "Liveness: 200 while the process runs",
  responses: { 200: { description: "Alive", content: { "application/json": { schema: z.object({ status: z.literal("ok") }), example: { status: "ok" } } } } },
});

const readyRoute = createRoute({
  method: "get",
  path: "/readyz",
  operationId: "readyz",
  tags: ["operations"],
  summary: "Readiness of the server and its stores",
  description:
    "`ok` (200) when every store answers; `degraded` (200) when the database or Redis is down but the other answers; `down` (503) when the database is down and no Redis answers, and from the moment a SIGTERM starts the drain.",
  responses: {
    200: { description: "Ready (ok or degraded)", content: { "application/json": { schema: Readiness } } },
    503: {
      description: "Not ready (down or draining)",
      content: { "application/json": { schema: Readiness, example: { status: "down", stores: { database: "down", cache: "in_process" } } } },
    },
  },
});

const metricsRoute = createRoute({
  method: "get",
  path: "/metrics",
  operationId: "metrics",
  tags: ["operations"],
  summary: "Prometheus metrics",
  responses: { 200: { description: "Prometheus text exposition format", content: { "text/plain": { schema: z.string(), example: METRICS_EXAMPLE } } } },
});

const docsRoute = createRoute({
  method: "get",
  path: "/docs",
  operationId: "docs",
  tags: ["operations"],
  summary: "Interactive API reference (works offline)",
  responses: { 200: { description: "HTML page", content: { "text/html": { schema: z.string(), example: "<!doctype html>\n<html lang=\"en\">\n<head>\n<title>feature-store API</title>\n…" } } } },
});

/** What `GET /` points at. */
const LINKS = { docs: "/docs", openapi: "/openapi.json", health: "/healthz", ready: "/readyz", metrics: "/metrics" };

const indexRoute = createRoute({
  method: "get",
  path: "/",
  operationId: "index",
  tags: ["operations"],
  summary: "Where to start: links to the API reference, the OpenAPI document and the health endpoints",
  responses: {
    200: {
      description: "Links (the interactive reference is at `docs`)",
      content: { "application/json": { schema: ServiceIndex, example: { name: "feature-store", version: "0.1.0", ...LINKS } } },
    },
  },
});

const openapiRoute = createRoute({
  method: "get",
  path: "/openapi.json",
  operationId: "openapi",
  tags: ["operations"],
  summary: "This OpenAPI 3.1 document",
  responses: {
    200: {
      description: "OpenAPI document",
      content: {
        "application/json": {
          schema: z.record(z.string(), z.unknown()),
          example: { openapi: "3.1.0", info: { title: "feature-store", version: "0.1.0" }, paths: { "/api/v1/features/online": {} } },
        },
      },
    },
  },
});

export function mountOps(app: OpenAPIHono<AppEnv>, deps: Deps, state: ServerState, version: string): void {
  mount(app, healthRoute, (c) => c.json({ status: "ok" as const }, 200));
  mount(app, readyRoute, async (c) => {
    const r = await checkReadiness(deps, state.draining);
    return c.json(r, r.status === "down" ? 503 : 200);
  });
  mount(app, metricsRoute, async (c) => {
    return c.body(await deps.metrics.registry.metrics(), 200, { "content-type": deps.metrics.registry.contentType });
  });
  mount(app, indexRoute, (c) => c.json({ name: "feature-store" as const, version, ...LINKS }, 200));
  mount(app, docsRoute, async (c) => c.body((await import("../docs.ts")).docsHtml, 200, { "content-type": "text/html; charset=UTF-8" }));
  // `/docs/` is the same page: one canonical address for it.
  app.get("/docs/", (c) => {
    c.set("route", "/docs/");
    return c.redirect("/docs", 301);
  });
  app.get("/docs/:asset", async (c) => {
    c.set("route", "/docs/{asset}");
    const docs = await import("../docs.ts");
    const cache = { "cache-control": "public, max-age=86400" };
    switch (c.req.param("asset")) {
      case "swagger-ui-bundle.js":
        return c.body(docs.docsAssets.bundle, 200, { "content-type": "text/javascript; charset=utf-8", ...cache });
      case "swagger-ui.css":
        return c.body(docs.docsAssets.css, 200, { "content-type": "text/css; charset=utf-8", ...cache });
      case "init.js":
        return c.body(docs.docsInit, 200, { "content-type": "text/javascript; charset=utf-8", ...cache });
      default:
        return problemResponse(c, "not_found", `no such file: ${new URL(c.req.url).pathname} (the API reference is at /docs)`);
    }
  });
  let doc: string | undefined;
  mount(app, openapiRoute, (c) => {
    doc ??= JSON.stringify(
      withHeadLimit(app.getOpenAPI31Document({
        openapi: "3.1.0",
        info: {
          title: "feature-store",
          version,
          description:
            "An ML feature store: register feature definitions, write values, read them online in about a millisecond, and get point-in-time correct training data. Every /api/v1 route needs an API key (`X-API-Key` or `Authorization: Bearer`). Errors are RFC 9457 problem+json.",
        },
        servers: [{ url: "/" }],
      })),
    );
    return jsonText<Record<string, unknown>, 200>(c, doc, 200);
  });
}

/**
 * Every operation can also be answered 431 by the HTTP layer itself, before any route runs: a
 * request line and headers over Bun's limit (16 KiB) are refused with an empty body. Documented
 * on every operation so clients (and schemathesis) know the status.
 */
function withHeadLimit<D extends { paths?: object }>(doc: D): D {
  for (const item of Object.values(doc.paths ?? {}) as object[]) {
    for (const op of Object.values(item) as unknown[]) {
      const responses = (op as { responses?: Record<string, unknown> }).responses;
      if (responses && !responses["431"]) responses["431"] = { description: "Request line and headers over 16 KiB (answered by the HTTP layer, empty body): send long inputs in the body" };
    }
  }
  return doc;
}
