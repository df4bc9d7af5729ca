/**
 * Mounting an operation: its createRoute() definition goes into the OpenAPI registry and its
 * handler onto the router. Bodies are read strictly (valid UTF-8 JSON) and validated with the
 * same zod schema the document is generated from.
 */
import type { Context, Handler, TypedResponse } from "hono";
import type { ContentfulStatusCode, StatusCode } from "hono/utils/http-status";
import type { JSONParsed } from "hono/utils/types";
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

/** An OpenAPI path template as Hono's router writes it: `/features/{name}` -> `/features/:name`. */
export type RouterPath<T extends string> = T extends `${infer Start}/{${infer Param}}${infer Rest}` ? `${Start}/:${Param}${RouterPath<Rest>}` : T;

/** Media types whose body is JSON (checked against the schema): `application/json`, `application/*+json`. */
type JsonMediaType = "application/json" | `application/${string}+json`;

/**
 * What a handler may answer with `status` for one declared media type: for JSON, `c.json(body,
 * status)` with `body` of the schema's output type; for anything else (NDJSON, text, HTML),
 * raw bytes or text with that status (`c.body`, `c.text`), which the schema cannot check.
 */
type MediaResponse<Media, Content, Status extends StatusCode> = Media extends JsonMediaType
  ? Content extends { schema: infer S extends z.ZodType }
    ? TypedResponse<JSONParsed<z.output<S>>, Status, "json">
    : never
  : TypedResponse<unknown, Status, "body" | "text">;

/**
 * Every response a route declares, as the typed responses a handler may return: one per status
 * and media type (see {@link MediaResponse}); a status without content is answered with an
 * empty body. Modelled on @hono/zod-openapi's `RouteConfigToTypedResponse`, but a status or
 * media type the route does not declare is a type error (that one lets any `Response` through
 * for media types it does not know).
 */
export type RouteResponse<R extends RouteConfig> = {
  [S in keyof R["responses"] & StatusCode]: R["responses"][S] extends { content: infer C extends object }
    ? { [M in keyof C]: MediaResponse<M, C[M], S> }[keyof C]
    : TypedResponse<null, S, "body">;
}[keyof R["responses"] & StatusCode];

/**
 * The handler of `route`: its path parameters are typed from the path (`c.req.param("name")`),
 * and it must answer one of the responses the route declares, each body checked against its
 * schema. Errors are thrown (AppError), not returned: the error handler renders them.
 */
export type RouteHandler<R extends RouteConfig> = Handler<AppEnv, RouterPath<R["path"]>, {}, RouteResponse<R> | Promise<RouteResponse<R>>>;

const JSON_HEADERS = { "content-type": "application/json" };

/**
 * Answers JSON text rendered by hand (byte for byte what `c.json(value)` would send: the online
 * hot path, the cached OpenAPI document) as a typed JSON response. `T` is the type of the value
 * the text was rendered from; the route's schema checks it as it checks a `c.json` body.
 */
export function jsonText<T, S extends ContentfulStatusCode>(c: Context<AppEnv>, text: string, status: S): Response & TypedResponse<JSONParsed<T>, S, "json"> {
  return c.body(text, status, JSON_HEADERS) as Response & TypedResponse<never, S, "body"> as unknown as Response & TypedResponse<JSONParsed<T>, S, "json">;
}

/** Registers `route` in the OpenAPI document and mounts `handler` at its path. */
export function mount<R extends RouteConfig>(app: OpenAPIHono<AppEnv>, route: R, handler: RouteHandler<R>): void {
  app.openAPIRegistry.registerPath(route);
  const path = route.path.replace(/\{(\w+)\}/g, ":$1");
  const run = handler as unknown as Handler<AppEnv>; // the router's context is untyped by path
  app.on(route.method.toUpperCase(), path, async (c, next) => {
    c.set("route", route.path);
    return run(c, next);
  });
}
