import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { stream } from "hono/streaming";
import { AppError } from "../../errors.ts";
import { parseTime } from "../../lib/time.ts";
import { lookupBatch, type BatchResult, type BatchRow } from "../../serving/batch.ts";
import type { Deps } from "../../serving/deps.ts";
import type { AppEnv } from "../env.ts";
import { problemBody } from "../errors.ts";
import { exclusive, mount, readJson, requireScope, validate } from "../route.ts";
import { BatchBody, BatchResponse, BatchResult as BatchResultSchema, BatchRowsBody, BatchSharedBody } from "../../schemas.ts";
import { problems, security } from "./common.ts";

export const batchRoute = createRoute({
  method: "post",
  path: "/api/v1/features/batch",
  operationId: "getBatchFeatures",
  tags: ["values"],
  summary: "Point-in-time correct feature values for training data (read)",
  description:
    "For each row and feature, the value current at the row's timestamp: greatest event_time <= timestamp, ties to the value written last. Nothing written with a later event time leaks into a row. `Accept: application/x-ndjson` streams one result object per line; a failure after the stream started ends it with a line `{\"error\": PROBLEM}`.",
  security,
  request: { body: { required: true, content: { "application/json": { schema: BatchBody } } } },
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

function toRows(raw: unknown): { rows: BatchRow[]; featureNames: string[] } {
  exclusive(raw, "rows", ["entity_ids", "timestamp"], "`rows` (a time per row) or `entity_ids` with `timestamp` (one time for all)");
  if (typeof raw === "object" && raw !== null && !Array.isArray(raw) && "rows" in raw) {
    const body = validate(BatchRowsBody, raw);
    const rows = body.rows.map((r, i) => {
      const at = parseTime(r.timestamp);
      if (at === null) throw new AppError("invalid_request", "invalid timestamp", { errors: [{ path: `rows[${i}].timestamp`, message: "expected an RFC 3339 timestamp" }] });
      return { entity_id: r.entity_id, at };
    });
    return { rows, featureNames: body.feature_names };
  }
  const body = validate(BatchSharedBody, raw);
  const at = parseTime(body.timestamp);
  if (at === null) throw new AppError("invalid_request", "invalid timestamp", { errors: [{ path: "timestamp", message: "expected an RFC 3339 timestamp" }] });
  return { rows: body.entity_ids.map((entity_id) => ({ entity_id, at })), featureNames: body.feature_names };
}

export function mountBatch(app: OpenAPIHono<AppEnv>, deps: Deps): void {
  mount(app, batchRoute, async (c) => {
    const { tenant } = requireScope(c, "read");
    const { rows, featureNames } = toRows(await readJson(c));
    const chunks = lookupBatch(deps, tenant, rows, featureNames);
    // The first chunk is read before answering, so an unavailable store is still a plain 503.
    const first = await chunks.next();
    const head: BatchResult[] = first.done ? [] : first.value;
    if ((c.req.header("accept") ?? "").includes("application/x-ndjson")) {
      c.header("content-type", "application/x-ndjson");
      return stream(c, async (s) => {
        try {
          await s.write(head.map((r) => `${JSON.stringify(r)}\n`).join(""));
          for await (const chunk of chunks) {
            let text = "";
            for (const r of chunk) text += `${JSON.stringify(r)}\n`;
            await s.write(text);
          }
        } catch (err) {
          const code = err instanceof AppError ? err.code : "internal";
          const detail = err instanceof AppError ? err.message : "an internal error occurred";
          if (!(err instanceof AppError)) deps.log.error({ err, request_id: c.get("requestId") }, "batch stream failed");
          await s.write(`${JSON.stringify({ error: problemBody(code, detail, c.get("requestId")) })}\n`);
        }
      });
    }
    const results: BatchResult[] = head;
    for await (const chunk of chunks) for (const r of chunk) results.push(r);
    return c.json({ results }, 200);
  });
}
