/**
 * Mounting an operation: its createRoute() definition goes into the OpenAPI registry and its
 * handler onto the router. Bodies are read strictly (valid UTF-8 JSON) and validated with the
 * same zod schema the document is generated from.
 */
import type { Context, Handler } from "hono";
import type { OpenAPIHono, RouteConfig, z } from "@hono/zod-openapi";
import { AppError } from "../errors.ts";
import { hasScope, type Scope } from "../serving/keys.ts";
import type { AppEnv } from "./env.ts";
import { decodeJson, validate } from "../schemas.ts";

// Hono-free, in src/schemas.ts (the bulk lane's workers decode bodies with them too).
export { decodeJson, exclusive, validate } from "../schemas.ts";

/** Reads the body as strict UTF-8 JSON; 400 when it is not. */
export async function readJson(c: Context<AppEnv>): Promise<unknown> {
  return decodeJson(await c.req.arrayBuffer());
}

/** Reads and validates the body against `schema`; 400 with `errors` on failure. */
export async function parseBody<S extends z.ZodType>(c: Context<AppEnv>, schema: S): Promise<z.output<S>> {
  const raw = await readJson(c);
  return validate(schema, raw);
}

/** Requires the authenticated principal to hold `scope` (403 otherwise). */
export function requireScope(c: Context<AppEnv>, scope: Scope) {
  const p = c.get("principal");
  if (!hasScope(p.scopes, scope)) throw new AppError("forbidden", `this API key lacks the ${scope} scope`);
  return p;
}

/** Registers `route` in the OpenAPI document and mounts `handler` at its path. */
export function mount(app: OpenAPIHono<AppEnv>, route: RouteConfig, handler: Handler<AppEnv>): void {
  app.openAPIRegistry.registerPath(route);
  const path = route.path.replace(/\{(\w+)\}/g, ":$1");
  app.on(route.method.toUpperCase(), path, async (c, next) => {
    c.set("route", route.path);
    return handler(c, next);
  });
}
