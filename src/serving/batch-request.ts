/**
 * Reading a `POST /api/v1/features/batch` request, free of the HTTP framework so that the bulk
 * lane's threads run it (src/lane/frame-jobs.ts): content negotiation (`Accept` -> JSON, NDJSON,
 * CSV, Parquet or Arrow IPC stream; `Content-Type` -> JSON, NDJSON, CSV or Parquet body), the
 * query options, and decoding the body into the contract's JSON form or an entity dataframe.
 */
import { AppError } from "../errors.ts";
import { decodeFrame, frameFromObjects, inputFormatOf, type InputFormat, type InputFrame } from "../formats/decode.ts";
import { OUTPUT_TYPES, type OutputFormat } from "../formats/encode.ts";
import { BatchFrameBody, BatchFrameQuery, BatchRowsBody, BatchSharedBody, decodeJson, exclusive, validate } from "../schemas.ts";
import type { FrameOptions } from "./batch.ts";

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

/**
 * The answer's and the body's formats from the headers alone (cheap: the serving thread checks
 * them before admitting the request into the bulk lane): 406 for an `Accept` naming no
 * supported format, 415 for an unsupported `Content-Type`.
 */
export function batchFormats(accept: string | undefined, contentType: string | undefined): { output: OutputFormat; input: InputFormat } {
  const output = negotiateOutput(accept);
  if (output === null) {
    throw new AppError("not_acceptable", `no supported response type in Accept; supported: ${[...new Set(Object.values(OUTPUT_TYPES))].join(", ")}`);
  }
  const input = inputFormatOf(contentType);
  if (input === null) {
    throw new AppError("unsupported_media_type", `unsupported Content-Type ${JSON.stringify(contentType)}; send application/json, application/x-ndjson, text/csv or application/vnd.apache.parquet`);
  }
  return { output, input };
}

/** A batch request as read: a contract form (decoded JSON) answered as JSON/NDJSON, or a dataframe query. */
export type BatchRequest = { kind: "contract"; json: unknown; format: "json" | "ndjson" } | { kind: "frame"; frame: InputFrame; options: FrameOptions; format: OutputFormat };

/** A batch request's raw parts, as the serving thread hands them over. */
export interface RawBatchRequest {
  accept: string | undefined;
  contentType: string | undefined;
  /** query parameters, each with all its values (Hono's `c.req.queries()`) */
  query: Record<string, string[]>;
  body: Uint8Array;
}

/**
 * The query parameters, validated on every request (an unknown or malformed one is a 400 even
 * with a JSON body, which carries its options in its fields and ignores valid ones); `null` when
 * there are none.
 */
function queryOptions(raw: Record<string, string[]>): FrameOptions | null {
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
 * feature names): 406/415 as {@link batchFormats}, 400 for query options or a body that do not
 * decode. The contract forms asked for as JSON or NDJSON come back as `contract`; as CSV, Parquet
 * or Arrow they become a two-column dataframe (`entity_id`, `timestamp`).
 */
export async function readBatchRequest(req: RawBatchRequest, normalize: (json: unknown) => unknown = (j) => j): Promise<BatchRequest> {
  const { output: format, input } = batchFormats(req.accept, req.contentType);
  const fromQuery = queryOptions(req.query);
  if (input !== "json") {
    const options = fromQuery ?? { featureNames: [] };
    if (options.featureNames.length === 0) {
      throw new AppError("invalid_request", "request does not match the schema", { errors: [{ path: "feature_names", message: "required: ?feature_names=a,b (the body is the dataframe)" }] });
    }
    return { kind: "frame", frame: await decodeFrame(input, req.body), options, format };
  }
  // `normalize` turns the contract forms' variants (a feature service) into the forms below
  const json = normalize(decodeJson(req.body));
  if (typeof json === "object" && json !== null && "entity_rows" in json) {
    const body = validate(BatchFrameBody, json);
    const options: FrameOptions = {
      featureNames: body.feature_names,
      ...(body.entity_columns ? { entityColumns: body.entity_columns } : {}),
      ...(body.timestamp_column ? { timestampColumn: body.timestamp_column } : {}),
    };
    return { kind: "frame", frame: frameFromObjects(body.entity_rows, "entity_rows"), options, format };
  }
  if (format === "json" || format === "ndjson") return { kind: "contract", json, format };
  exclusive(json, "rows", ["entity_ids", "timestamp"], "`rows` (a time per row) or `entity_ids` with `timestamp` (one time for all)");
  if (typeof json === "object" && json !== null && "rows" in json) {
    const body = validate(BatchRowsBody, json);
    return { kind: "frame", frame: frameFromObjects(body.rows), options: { featureNames: body.feature_names, timestampColumn: "timestamp" }, format };
  }
  const body = validate(BatchSharedBody, json);
  const frame = frameFromObjects(body.entity_ids.map((entity_id) => ({ entity_id, timestamp: body.timestamp })));
  return { kind: "frame", frame, options: { featureNames: body.feature_names, timestampColumn: "timestamp" }, format };
}
