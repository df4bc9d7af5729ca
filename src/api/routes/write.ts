import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import type { Deps } from "../../serving/deps.ts";
import { writeFeatures } from "../../serving/write.ts";
import type { AppEnv } from "../env.ts";
import { mount, parseBody, requireScope } from "../route.ts";
import { WriteBody, WriteResponse } from "../../schemas.ts";
import { problemsFor, security } from "./common.ts";

export const writeRoute = createRoute({
  method: "post",
  path: "/api/v1/features/write",
  operationId: "writeFeatures",
  tags: ["values"],
  summary: "Write feature values (write)",
  description:
    "All or nothing: if any value is invalid (wrong type, unknown feature, a feature of another entity type) nothing is written and the 400 says which record and feature. `event_time` defaults to the time of receipt. `written` counts every accepted value, identical re-sends and values older than the online one included.",
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

export function mountWrite(app: OpenAPIHono<AppEnv>, deps: Deps): void {
  mount(app, writeRoute, async (c) => {
    const { tenant } = requireScope(c, "write");
    const body = await parseBody(c, WriteBody);
    const written = await writeFeatures(deps, tenant, body.entity_type, body.records);
    return c.json({ written }, 200);
  });
}
