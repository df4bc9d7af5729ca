import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import { mentionsEntityRows, negotiateOutput, readBatchRequest, respondFrame } from "./batch-frame.ts";
import { inputFormatOf } from "../../formats/decode.ts";
import { lookupFrame } from "../../serving/batch.ts";
import type { Deps } from "../../serving/deps.ts";
import type { BulkLane } from "../../lane/pool.ts";
import type { AppEnv } from "../env.ts";
import { mount, requireScope } from "../route.ts";
import { BatchBody, batchExamples, BatchFrameQuery, BatchFrameResponse, BatchFrameRow, BatchResponse, BinaryTable, CsvTable, BatchResult as BatchResultSchema } from "../../schemas.ts";
import { problemsFor, security } from "./common.ts";
import { batchByService } from "./service-forms.ts";
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

/** The body is decoded, answered and rendered in the bulk lane (src/lane); this thread only streams the bytes. */
export function mountBatch(app: OpenAPIHono<AppEnv>, deps: Deps, lane: BulkLane): void {
  mount(app, batchRoute, async (c) => {
    const { tenant } = requireScope(c, "read");
    // The contract's JSON forms answered as JSON or NDJSON (the common case) go to the bulk lane
    // untouched: the body is decoded, answered and rendered on its threads.
    const accept = c.req.header("accept");
    const format = negotiateOutput(accept);
    if ((format === "json" || format === "ndjson") && inputFormatOf(c.req.header("content-type")) === "json" && Object.keys(c.req.queries()).length === 0) {
      const body = await c.req.arrayBuffer();
      if (!mentionsEntityRows(body)) {
        const { contentType, body: answer } = await lane.batch({ tenant, accept: accept ?? "", requestId: c.get("requestId"), readBody: async () => body });
        return c.body(answer, 200, { "content-type": contentType });
      }
    }
    // Entity dataframes and columnar formats (see batch-frame.ts). They still run on this thread:
    // moving them into the bulk lane is the next step (README, Training data).
    const req = await readBatchRequest(c, (json) => batchByService(deps, tenant, json));
    if (req.kind === "frame") return respondFrame(c, deps, lookupFrame(deps, tenant, req.frame, req.options), req.format);
    const { contentType, body: answer } = await lane.batch({ tenant, accept: accept ?? "", requestId: c.get("requestId"), readBody: () => c.req.arrayBuffer() });
    return c.body(answer, 200, { "content-type": contentType });
  });
}
