import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import type { BulkLane } from "../../lane/pool.ts";
import type { AppEnv } from "../env.ts";
import { mount, requireScope } from "../route.ts";
import { BatchBody, BatchResponse, BatchResult as BatchResultSchema } from "../../schemas.ts";
import { problems, security } from "./common.ts";
import { BatchServiceRowsBody, BatchServiceSharedBody } from "../../catalog-schemas.ts";

export const batchRoute = createRoute({
  method: "post",
  path: "/api/v1/features/batch",
  operationId: "getBatchFeatures",
  tags: ["values"],
  summary: "Point-in-time correct feature values for training data (read)",
  description:
    "For each row and feature, the value current at the row's timestamp: greatest event_time <= timestamp, ties to the value written last. Nothing written with a later event time leaks into a row. The answer is streamed in chunks as rows are computed. `Accept: application/x-ndjson` gives one result object per line; a failure after the stream started ends it with a line `{\"error\": PROBLEM}` (a JSON answer is cut off instead). Runs in the bulk lane: when it is full, 503 `unavailable` with `Retry-After` (online reads are never refused for it).",
  security,
  request: { body: { required: true, content: { "application/json": { schema: z.union([BatchBody, BatchServiceSharedBody, BatchServiceRowsBody]) } } } },
  responses: {
    200: {
      description: "One result per input row, in input order",
      content: {
        "application/json": { schema: BatchResponse },
        "application/x-ndjson": { schema: BatchResultSchema },
      },
    },
    ...problems(400, 404, 413),
  },
});

/** The body is decoded, answered and rendered in the bulk lane (src/lane); this thread only streams the bytes. */
export function mountBatch(app: OpenAPIHono<AppEnv>, lane: BulkLane): void {
  mount(app, batchRoute, async (c) => {
    const { tenant } = requireScope(c, "read");
    const { contentType, body } = await lane.batch({
      tenant,
      accept: c.req.header("accept") ?? "",
      requestId: c.get("requestId"),
      readBody: () => c.req.arrayBuffer(),
    });
    return c.body(body, 200, { "content-type": contentType });
  });
}
