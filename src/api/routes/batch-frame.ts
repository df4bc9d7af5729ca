/**
 * The entity-dataframe side of `POST /api/v1/features/batch`: content negotiation (`Accept` ->
 * JSON, NDJSON, CSV, Parquet or Arrow IPC stream; `Content-Type` -> JSON, NDJSON, CSV or Parquet
 * body), reading the request into an entity dataframe, and streaming the encoded answer. The
 * contract's two JSON forms, asked for as JSON or NDJSON, are handed back to the batch handler
 * unchanged.
 */
import type { Context, TypedResponse } from "hono";
import { AppError } from "../../errors.ts";
import { decodeFrame, frameFromObjects, inputFormatOf, type InputFrame } from "../../formats/decode.ts";
import { createEncoder, OUTPUT_TYPES, type OutputFormat } from "../../formats/encode.ts";
import type { FrameOptions, FrameQuery } from "../../serving/batch.ts";
import type { Deps } from "../../serving/deps.ts";
import type { AppEnv } from "../env.ts";
import { problemBody } from "../errors.ts";
import { exclusive, readJson, validate } from "../route.ts";
import { BatchFrameBody, BatchFrameQuery, BatchRowsBody, BatchSharedBody } from "../../schemas.ts";

/** Media types of `Accept` that select each output format (`*\/*` and `application/*` mean JSON). */
const ACCEPTS: Record<string, OutputFormat> = {
  "*/*": "json",
  "application/*": "json",
  "application/json": "json",
  "application/x-ndjson": "ndjson",
  "application/jsonl": "ndjson",
  "text/*": "csv",
  "text/csv": "csv",
  "application/vnd.apache.parquet": "parquet",
  "application/x-parquet": "parquet",
  "application/parquet": "parquet",
  "application/vnd.apache.arrow.stream": "arrow",
};

/**
 * The output format an `Accept` header asks for: the supported media type with the highest
 * q-value (ties to the first listed); JSON when the header is absent; `null` when nothing listed
 * is supported.
 */
export function negotiateOutput(accept: string | undefined): OutputFormat | null {
  if (accept === undefined || accept.trim() === "") return "json";
  let best: { f: OutputFormat; q: number } | null = null;
  for (const part of accept.split(",")) {
    const [type, ...params] = part.split(";").map((x) => x.trim().toLowerCase());
    const f = ACCEPTS[type ?? ""];
    if (!f) continue;
    const qp = params.find((p) => p.startsWith("q="));
    const q = qp ? Number(qp.slice(2)) : 1;
    if (!(q > 0)) continue;
    if (!best || q > best.q) best = { f, q };
  }
  return best?.f ?? null;
}

/** A batch request as read: a contract form for the batch handler, or a dataframe query. */
export type BatchRequest = { kind: "contract"; json: unknown } | { kind: "frame"; frame: InputFrame; options: FrameOptions; format: OutputFormat };

/**
 * The query parameters, validated on every request (an unknown or malformed one is a 400 even
 * with a JSON body, which carries its options in its fields and ignores valid ones); `null` when
 * there are none.
 */
function queryOptions(c: Context<AppEnv>): FrameOptions | null {
  const raw = c.req.queries();
  if (Object.keys(raw).length === 0) return null;
  const list = (name: string) => raw[name]?.flatMap((v) => v.split(",")).map((v) => v.trim()).filter((v) => v !== "");
  const q = validate(BatchFrameQuery.partial(), {
    ...Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, v.at(-1)])),
    ...(raw.feature_names ? { feature_names: list("feature_names") } : {}),
    ...(raw.entity_columns ? { entity_columns: list("entity_columns") } : {}),
  });
  const entityColumns: Record<string, string> = {};
  for (const pair of q.entity_columns ?? []) {
    const at = pair.indexOf(":");
    entityColumns[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return { featureNames: q.feature_names ?? [], entityColumns, ...(q.timestamp_column ? { timestampColumn: q.timestamp_column } : {}) };
}

/**
 * Reads a batch request (`normalize` rewrites a JSON body first, e.g. a feature service into its
 * feature names): 406 for an `Accept` naming no supported format, 415 for an unsupported
 * `Content-Type`, 400 for a body that does not decode. The contract forms asked for as JSON or
 * NDJSON come back as `contract`; as CSV, Parquet or Arrow they become a two-column dataframe
 * (`entity_id`, `timestamp`).
 */
export async function readBatchRequest(c: Context<AppEnv>, normalize: (json: unknown) => unknown = (j) => j): Promise<BatchRequest> {
  const format = negotiateOutput(c.req.header("accept"));
  if (format === null) {
    throw new AppError("not_acceptable", `no supported response type in Accept; supported: ${[...new Set(Object.values(OUTPUT_TYPES))].join(", ")}`);
  }
  const input = inputFormatOf(c.req.header("content-type"));
  if (input === null) {
    throw new AppError("unsupported_media_type", `unsupported Content-Type ${JSON.stringify(c.req.header("content-type"))}; send application/json, application/x-ndjson, text/csv or application/vnd.apache.parquet`);
  }
  const fromQuery = queryOptions(c);
  if (input !== "json") {
    const options = fromQuery ?? { featureNames: [] };
    if (options.featureNames.length === 0) {
      throw new AppError("invalid_request", "request does not match the schema", { errors: [{ path: "feature_names", message: "required: ?feature_names=a,b (the body is the dataframe)" }] });
    }
    return { kind: "frame", frame: await decodeFrame(input, new Uint8Array(await c.req.arrayBuffer())), options, format };
  }
  // `normalize` turns the contract forms' variants (a feature service) into the forms below
  const json = normalize(await readJson(c));
  if (typeof json === "object" && json !== null && "entity_rows" in json) {
    const body = validate(BatchFrameBody, json);
    const options: FrameOptions = {
      featureNames: body.feature_names,
      ...(body.entity_columns ? { entityColumns: body.entity_columns } : {}),
      ...(body.timestamp_column ? { timestampColumn: body.timestamp_column } : {}),
    };
    return { kind: "frame", frame: frameFromObjects(body.entity_rows, "entity_rows"), options, format };
  }
  if (format === "json" || format === "ndjson") return { kind: "contract", json };
  exclusive(json, "rows", ["entity_ids", "timestamp"], "`rows` (a time per row) or `entity_ids` with `timestamp` (one time for all)");
  if (typeof json === "object" && json !== null && "rows" in json) {
    const body = validate(BatchRowsBody, json);
    return { kind: "frame", frame: frameFromObjects(body.rows), options: { featureNames: body.feature_names, timestampColumn: "timestamp" }, format };
  }
  const body = validate(BatchSharedBody, json);
  const frame = frameFromObjects(body.entity_ids.map((entity_id) => ({ entity_id, timestamp: body.timestamp })));
  return { kind: "frame", frame, options: { featureNames: body.feature_names, timestampColumn: "timestamp" }, format };
}

const TEXT: ReadonlySet<OutputFormat> = new Set(["json", "ndjson", "csv"]);

/**
 * Streams a dataframe query's answer in `format`. The first chunk is computed before answering,
 * so an unavailable store is still a plain 503; the rest is pulled as the client reads. A later
 * failure ends an NDJSON stream with its `{"error": PROBLEM}` line and aborts any other format's
 * body (the connection closes without the final chunk: a client sees a truncated transfer, never
 * a well-formed partial file).
 */
export async function respondFrame(c: Context<AppEnv>, deps: Deps, query: FrameQuery, format: OutputFormat): Promise<Response & TypedResponse<ReadableStream<Uint8Array>, 200, "body">> {
  const enc = createEncoder(format, query.columns);
  const first = await query.chunks.next();
  const requestId = c.get("requestId");
  const head = [enc.begin(), ...(first.done ? [] : [enc.write(first.value)])];
  let done = first.done === true;
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const b of head) if (b.byteLength > 0) controller.enqueue(b);
      if (done) {
        controller.enqueue(enc.end());
        controller.close();
      }
    },
    async pull(controller) {
      if (done) return;
      try {
        const next = await query.chunks.next();
        if (next.done) {
          done = true;
          controller.enqueue(enc.end());
          controller.close();
          return;
        }
        const bytes = enc.write(next.value);
        if (bytes.byteLength > 0) controller.enqueue(bytes);
      } catch (err) {
        done = true;
        const code = err instanceof AppError ? err.code : "internal";
        const detail = err instanceof AppError ? err.message : "an internal error occurred";
        if (!(err instanceof AppError)) deps.log.error({ err, request_id: requestId }, "batch stream failed");
        const tail = enc.fail(problemBody(code, detail, requestId));
        if (tail) {
          controller.enqueue(tail);
          controller.close();
        } else controller.error(err);
      }
    },
    cancel() {
      void query.chunks.return(undefined);
    },
  });
  return c.body(body, 200, { "content-type": TEXT.has(format) ? `${OUTPUT_TYPES[format]}; charset=utf-8` : OUTPUT_TYPES[format] });
}

const ENTITY_ROWS = Buffer.from('"entity_rows"');

/**
 * Whether a JSON body may be the entity-dataframe form (`entity_rows`), without parsing it: a
 * byte search (memmem). A false positive (the text inside a string) only sends the body down the
 * dataframe path, which parses it and answers the contract's forms just the same.
 */
export function mentionsEntityRows(body: ArrayBuffer): boolean {
  return Buffer.from(body).indexOf(ENTITY_ROWS) !== -1;
}
