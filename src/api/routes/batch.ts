import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import { batchFormats } from "../../serving/batch-request.ts";
import type { BulkLane } from "../../lane/pool.ts";
import type { AppEnv } from "../env.ts";
import { mount, requireScope } from "../route.ts";
import { BatchBody, batchExamples, BatchFrameQuery, BatchFrameResponse, BatchFrameRow, BatchResponse, BinaryTable, CsvTable, BatchResult as BatchResultSchema } from "../../schemas.ts";
import { problemsFor, security } from "./common.ts";
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
  request: {
    query: BatchFrameQuery.partial(),
    body: {
      required: true,
      content: {
        "application/json": { schema: z.union([BatchBody, BatchServiceSharedBody, BatchServiceRowsBody]) },
        // entity dataframes as files (feature names and column mapping in the query): see the README
        "application/x-ndjson": { schema: BatchFrameRow },
        "text/csv": { schema: CsvTable },
        "application/vnd.apache.parquet": { schema: BinaryTable },
      },
    },
  },
  responses: {
    200: {
      description:
        "One result per input row, in input order. Contract forms as JSON/NDJSON: `BatchResponse` / one `BatchResult` per line. Entity dataframes (`entity_rows`, or a CSV/NDJSON/Parquet body), and contract forms asked for as CSV/Parquet/Arrow: the input columns, then per feature its value and `<ref>__status`; JSON `{\"rows\": [...]}`, NDJSON one row object per line, CSV with a header, Parquet and Arrow IPC stream with typed columns.",
      content: {
        "application/json": { schema: z.union([BatchResponse, BatchFrameResponse]), examples: batchExamples.json },
        "application/x-ndjson": { schema: z.union([BatchResultSchema, BatchFrameRow]), examples: batchExamples.ndjson },
        "text/csv": { schema: CsvTable },
        "application/vnd.apache.parquet": { schema: BinaryTable },
        "application/vnd.apache.arrow.stream": { schema: BinaryTable },
      },
    },
    ...problemsFor(
      {
        406: { code: "not_acceptable", detail: "no supported response type in Accept; supported: application/json, application/x-ndjson, text/csv, application/vnd.apache.parquet, application/vnd.apache.arrow.stream" },
        415: { code: "unsupported_media_type", detail: 'unsupported Content-Type "text/plain"; send application/json, application/x-ndjson, text/csv or application/vnd.apache.parquet' },
      },
      400,
      404,
      406,
      413,
      415,
    ),
  },
});

/** Seconds a streaming batch answer may stay silent between chunks (Bun's maximum). */
const BATCH_IDLE_SECONDS = 255;

/**
 * The body is decoded, answered and rendered in the bulk lane (src/lane/frame-jobs.ts), whatever
 * its form and the answer's format; this thread only checks the headers (406/415 before
 * admission: header parsing only) and streams the bytes.
 */
export function mountBatch(app: OpenAPIHono<AppEnv>, lane: BulkLane): void {
  mount(app, batchRoute, async (c) => {
    const { tenant } = requireScope(c, "read");
    const accept = c.req.header("accept");
    const contentType = c.req.header("content-type");
    batchFormats(accept, contentType);
    const answer = await lane.batch({ tenant, accept, contentType, query: c.req.queries(), requestId: c.get("requestId"), readBody: () => c.req.arrayBuffer() });
    // A chunk may take longer to compute than Bun's idle timeout (10 s), which would cut the
    // stream mid-answer (PostgreSQL, a chunk of entities never read before, a busy machine): this
    // connection may stay silent for up to BATCH_IDLE_SECONDS between chunks. (`c.env` is Bun's
    // server when served; absent when the app is called in process.)
    (c.env as { timeout?: (req: Request, seconds: number) => void } | undefined)?.timeout?.(c.req.raw, BATCH_IDLE_SECONDS);
    return c.body(answer.body, 200, { "content-type": answer.contentType });
  });
}
