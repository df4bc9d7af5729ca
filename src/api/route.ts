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
import { issueWording, zodErrors } from "../schemas.ts";

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

/** Reads the body as strict UTF-8 JSON; 400 when it is not. */
export async function readJson(c: Context<AppEnv>): Promise<unknown> {
  const buf = await c.req.arrayBuffer();
  let text: string;
  try {
    text = utf8.decode(buf);
  } catch {
    throw new AppError("invalid_request", "request body is not valid UTF-8");
  }
  if (text.trim() === "") throw new AppError("invalid_request", "request body is empty; a JSON object is required");
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    const why = e instanceof SyntaxError ? e.message : "too deeply nested";
    throw new AppError("invalid_request", `request body is not valid JSON: ${why}`);
  }
  if ((text.includes("__proto__") || text.includes("\\u")) && hasProtoKey(value)) {
    throw new AppError("invalid_request", "`__proto__` is not allowed as a key in a request body");
  }
  return value;
}

/** Whether any object in a parsed JSON value has an own `__proto__` key (it would be dropped or misread). */
function hasProtoKey(root: unknown): boolean {
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v !== "object" || v === null) continue;
    if (Array.isArray(v)) {
      for (const x of v) if (typeof x === "object" && x !== null) stack.push(x);
      continue;
    }
    if (Object.hasOwn(v, "__proto__")) return true;
    for (const x of Object.values(v)) if (typeof x === "object" && x !== null) stack.push(x);
  }
  return false;
}

/** Reads and validates the body against `schema`; 400 with `errors` on failure. */
export async function parseBody<S extends z.ZodType>(c: Context<AppEnv>, schema: S): Promise<z.output<S>> {
  const raw = await readJson(c);
  return validate(schema, raw);
}

/** Validates a value against `schema`; 400 with `errors` on failure. */
export function validate<S extends z.ZodType>(schema: S, raw: unknown): z.output<S> {
  const r = schema.safeParse(raw, { error: issueWording });
  if (!r.success) throw new AppError("invalid_request", "request does not match the schema", { errors: zodErrors(r.error) });
  return r.data;
}

/**
 * Bodies with alternative shapes (`entity_id` | `entity_ids`; `rows` | `entity_ids` + `timestamp`):
 * when `raw` has `field` and any of `others`, a 400 saying they are mutually exclusive (rather
 * than calling one of them an unknown field of the other shape). `choice` says what to send.
 */
export function exclusive(raw: unknown, field: string, others: readonly string[], choice: string): void {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw) || !(field in raw)) return;
  const errors = others.filter((o) => o in raw).map((o) => ({ path: o, message: `\`${field}\` and \`${o}\` are mutually exclusive: send ${choice}` }));
  if (errors.length > 0) throw new AppError("invalid_request", "request does not match the schema", { errors });
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
