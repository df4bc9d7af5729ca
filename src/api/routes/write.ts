import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import type { BulkLane } from "../../lane/pool.ts";
import type { AppEnv } from "../env.ts";
import { mount, requireScope } from "../route.ts";
import { WriteBody, WriteResponse } from "../../schemas.ts";
import { problemsFor, security } from "./common.ts";

export const writeRoute = createRoute({
  method: "post",
  path: "/api/v1/features/write",
  operationId: "writeFeatures",
  tags: ["values"],
  summary: "Write feature values (write)",
  description:
    "All or nothing: if any value is invalid (wrong type, unknown feature, a feature of another entity type) nothing is written and the 400 says which record and feature. `event_time` defaults to the time of receipt. `written` counts every accepted value, identical re-sends and values older than the online one included. Runs in the bulk lane: when it is full, 503 `unavailable` with `Retry-After` (online reads are never refused for it).",
  security,
  request: { body: { required: true, content: { "application/json": { schema: WriteBody } } } },
  responses: {
    200: { description: "Values accepted", content: { "application/json": { schema: WriteResponse } } },
    ...problemsFor(
      { 400: { code: "invalid_request", detail: "1 invalid value(s); nothing was written", errors: [{ path: "records[0].features.user_age", message: "expected an integer (int32)" }] } },
      400,
      413,
    ),
  },
});

/** The body is decoded, validated and stored in the bulk lane (src/lane), never on this thread. */
export function mountWrite(app: OpenAPIHono<AppEnv>, lane: BulkLane): void {
  mount(app, writeRoute, async (c) => {
    const { tenant } = requireScope(c, "write");
    const written = await lane.write({ tenant, readBody: () => c.req.arrayBuffer() });
    return c.json({ written }, 200);
  });
}
