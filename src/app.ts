/**
 * createApp(deps): the HTTP API as a Hono app. No I/O here: everything it talks to comes in
 * through `deps`.
 */
import { OpenAPIHono } from "@hono/zod-openapi";
import { bodyLimit } from "hono/body-limit";
import { requestId } from "hono/request-id";
import { AppError } from "./errors.ts";
import type { Deps } from "./serving/deps.ts";
import type { AppEnv } from "./api/env.ts";
import { errorHandler, problemResponse } from "./api/errors.ts";
import { authenticate } from "./api/middleware/auth.ts";
import { observe } from "./api/middleware/observe.ts";
import { mountBatch } from "./api/routes/batch.ts";
import { mountDefinitions } from "./api/routes/definitions.ts";
import { mountOnline } from "./api/routes/online.ts";
import { mountOps, type ServerState } from "./api/routes/ops.ts";
import { mountRegister } from "./api/routes/register.ts";
import { mountWrite } from "./api/routes/write.ts";

export type { ServerState };

/** Builds the app. `state.draining` flips /readyz to 503 during shutdown. */
export function createApp(deps: Deps, state: ServerState = { draining: false }, version = "dev"): OpenAPIHono<AppEnv> {
  const app = new OpenAPIHono<AppEnv>();
  app.use(requestId());
  app.use(observe(deps.metrics, deps.log));
  app.onError(errorHandler(deps.log));
  app.notFound((c) => problemResponse(c, "not_found", `no route for ${c.req.method} ${new URL(c.req.url).pathname}`));

  app.openAPIRegistry.registerComponent("securitySchemes", "ApiKeyHeader", { type: "apiKey", in: "header", name: "X-API-Key" });
  app.openAPIRegistry.registerComponent("securitySchemes", "BearerKey", { type: "http", scheme: "bearer" });

  mountOps(app, deps, state, version);

  app.use("/api/v1/*", authenticate(deps.keys));
  app.use(
    "/api/v1/*",
    bodyLimit({
      maxSize: deps.config.BODY_LIMIT_BYTES,
      onError: () => {
        throw new AppError("payload_too_large", `request body is over the ${deps.config.BODY_LIMIT_BYTES}-byte limit`);
      },
    }),
  );
  mountRegister(app, deps);
  mountWrite(app, deps);
  mountOnline(app, deps);
  mountBatch(app, deps);
  mountDefinitions(app, deps);
  return app;
}
