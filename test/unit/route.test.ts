/**
 * `mount`: the route goes into the OpenAPI document, the handler onto the router at the path
 * in Hono's form, labelled with its template; and the handler is typed by the route, so that
 * path parameters come from the path and every answer is one the route declares, its body
 * checked against the schema. The `@ts-expect-error` lines are the type checks: if `mount`
 * stopped checking, they would be unused and `tsc --noEmit` (the typecheck step) would fail.
 */
import { describe, expect, test } from "bun:test";
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { AppEnv } from "../../src/api/env.ts";
import { jsonText, mount } from "../../src/api/route.ts";
import { problems } from "../../src/api/routes/common.ts";
import { problemBody } from "../../src/api/errors.ts";

const Thing = z.object({ name: z.string(), size: z.int() });
const thingRoute = createRoute({
  method: "get",
  path: "/things/{name}",
  operationId: "getThing",
  responses: {
    200: { description: "The thing", content: { "application/json": { schema: Thing } } },
    202: { description: "Not yet", content: { "application/json": { schema: z.object({ pending: z.literal(true) }) } } },
    204: { description: "Gone" },
    206: { description: "Its bytes", content: { "application/x-ndjson": { schema: Thing } } },
    ...problems(404),
  },
});

function app() {
  const a = new OpenAPIHono<AppEnv>();
  const labels: string[] = [];
  a.use(async (c, next) => {
    await next();
    labels.push(c.get("route"));
  });
  mount(a, thingRoute, (c) => {
    const name = c.req.param("name");
    if (name === "pending") return c.json({ pending: true as const }, 202);
    if (name === "gone") return c.body(null, 204);
    if (name === "bytes") return c.body(`{"name":"x","size":1}\n`, 206);
    if (name === "text") return jsonText<{ name: string; size: number }, 200>(c, `{"name":"text","size":4}`, 200);
    return c.json({ name, size: name.length }, 200);
  });
  return { a, labels };
}

describe("mount", () => {
  test("serves the route at its path (`{name}` as `:name`), labelled by its template, and documents it", async () => {
    const { a, labels } = app();
    const res = await a.request("/things/abc");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ name: "abc", size: 3 });
    expect(labels).toEqual(["/things/{name}"]);
    expect((await a.request("/things/pending")).status).toBe(202);
    expect((await a.request("/things/gone")).status).toBe(204);
    const text = await a.request("/things/text");
    expect(text.headers.get("content-type")).toBe("application/json");
    expect(await text.json()).toEqual({ name: "text", size: 4 });
    const doc = a.getOpenAPI31Document({ openapi: "3.1.0", info: { title: "t", version: "1" } });
    expect(Object.keys(doc.paths ?? {})).toEqual(["/things/{name}"]);
    expect(doc.paths?.["/things/{name}"]?.get?.operationId).toBe("getThing");
  });

  test("the handler's answers are checked against the route (compile time)", () => {
    const a = new OpenAPIHono<AppEnv>();
    // @ts-expect-error a body that does not match the 200 schema
    mount(a, thingRoute, (c) => c.json({ name: "x", size: "big" }, 200));
    // @ts-expect-error a field the schema does not have, in place of one it requires
    mount(a, thingRoute, (c) => c.json({ name: "x", sise: 1 }, 200));
    // @ts-expect-error a status the route does not declare
    mount(a, thingRoute, (c) => c.json({ name: "x", size: 1 }, 201));
    // @ts-expect-error raw bytes where the route declares JSON only
    mount(a, thingRoute, (c) => c.body("{}", 200));
    // @ts-expect-error a path parameter the path does not have
    mount(a, thingRoute, (c) => c.json({ name: c.req.param("nmae"), size: 1 }, 200));
    // @ts-expect-error JSON text rendered from a value of another type
    mount(a, thingRoute, (c) => jsonText<{ name: number }, 200>(c, "{}", 200));
    // a problem with a status the route declares (404, or one every route has) is an answer too
    mount(a, thingRoute, (c) => c.json(problemBody("not_found", "no such thing", "r"), 404));
    mount(a, thingRoute, (c) => c.json(problemBody("unavailable", "try again", "r"), 503));
    // @ts-expect-error a problem with a status the route does not declare
    mount(a, thingRoute, (c) => c.json(problemBody("conflict", "exists", "r"), 409));
    expect(a.routes.length).toBe(9);
  });
});
