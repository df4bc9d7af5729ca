/**
 * A point-in-time batch as the bulk lane answers it (src/lane/jobs.ts runs it on a worker
 * thread): read the request (serving/batch-request.ts: negotiation, query options, body in any
 * accepted format), then either the contract's JSON forms answered as JSON/NDJSON (lookupBatch
 * and a renderer, render.ts) or an entity dataframe (lookupFrame and a columnar encoder,
 * formats/encode.ts). Either way the result is the same thing: a content type and byte chunks.
 */
import { createEncoder, OUTPUT_TYPES, type OutputFormat } from "../formats/encode.ts";
import { BatchRowsQuery, BatchSharedQuery, exclusive, validate } from "../schemas.ts";
import { lookupBatch, lookupFrame, type BatchRow, type StatusCounts } from "../serving/batch.ts";
import { readBatchRequest, type RawBatchRequest } from "../serving/batch-request.ts";
import type { Deps } from "../serving/deps.ts";
import type { Stores } from "../store/types.ts";
import { chooseRenderer } from "./render.ts";

/** One answer being produced. */
export interface BatchAnswer {
  /** Content-Type of the answer */
  contentType: string;
  /** the answer's bytes, chunk by chunk (a dataframe's are never empty), each with the values it served per status */
  chunks: AsyncGenerator<{ bytes: Uint8Array; counts: StatusCounts | undefined }>;
  /** bytes closing the answer after its last chunk (with the counts of rows whose bytes were held back) */
  end(): { bytes: Uint8Array; counts: StatusCounts | undefined };
  /** bytes ending an answer that failed after it started; `undefined` when the format cannot say so (the connection is cut) */
  failure(problem: object): Uint8Array | undefined;
}

const encoder = new TextEncoder();
const bytesOf = (x: string | Uint8Array): Uint8Array => (typeof x === "string" ? encoder.encode(x) : x);

/**
 * `a` then `b`, in a buffer of their own: chunks are transferred to the serving thread (which
 * detaches their buffers), and an encoder may hand out a shared constant (its empty chunk).
 */
function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a);
  out.set(b, a.byteLength);
  return out;
}

/** The contract's two JSON forms (already decoded) as rows (entity, as-of time) and feature references; 400 when invalid. */
export function contractRows(raw: unknown): { rows: BatchRow[]; featureNames: string[] } {
  exclusive(raw, "rows", ["entity_ids", "timestamp"], "`rows` (a time per row) or `entity_ids` with `timestamp` (one time for all)");
  if (typeof raw === "object" && raw !== null && !Array.isArray(raw) && "rows" in raw) {
    const req = validate(BatchRowsQuery, raw); // timestamps parsed by the schema
    return { rows: req.rows.map((r) => ({ entity_id: r.entity_id, at: r.timestamp })), featureNames: req.feature_names };
  }
  const req = validate(BatchSharedQuery, raw);
  const at = req.timestamp;
  return { rows: req.entity_ids.map((entity_id) => ({ entity_id, at })), featureNames: req.feature_names };
}

const TEXT: ReadonlySet<OutputFormat> = new Set(["json", "ndjson", "csv"]);

/**
 * Reads a batch request and starts its answer: every 400/404/406/415 is thrown here, before any
 * output. `normalise` rewrites a JSON body in another accepted form (a feature service).
 */
export async function openBatch(
  deps: Pick<Deps, "registry" | "log"> & { stores: Pick<Stores, "offline"> },
  tenant: string,
  raw: RawBatchRequest,
  normalise: ((json: unknown) => unknown) | undefined,
  chunkKeys: number | undefined,
): Promise<BatchAnswer> {
  const req = await readBatchRequest(raw, normalise);
  if (req.kind === "contract") {
    const { rows, featureNames } = contractRows(req.json);
    const renderer = chooseRenderer(OUTPUT_TYPES[req.format]);
    const results = lookupBatch(deps, tenant, rows, featureNames, chunkKeys);
    return {
      contentType: renderer.contentType,
      chunks: (async function* () {
        for await (const c of results) yield { bytes: bytesOf(renderer.chunk(c.results)), counts: c.counts };
      })(),
      end: () => ({ bytes: bytesOf(renderer.end()), counts: undefined }),
      failure: (problem) => {
        const tail = renderer.failure(problem);
        return tail === undefined ? undefined : bytesOf(tail);
      },
    };
  }
  const query = lookupFrame(deps, tenant, req.frame, req.options);
  const enc = createEncoder(req.format, query.columns);
  // The header (schema) goes out with the first rows; bytes an encoder holds back (and the
  // counts of their rows) wait for the next chunk that has some.
  let held = enc.begin();
  let counts: StatusCounts | undefined;
  return {
    contentType: TEXT.has(req.format) ? `${OUTPUT_TYPES[req.format]}; charset=utf-8` : OUTPUT_TYPES[req.format],
    chunks: (async function* () {
      for await (const c of query.chunks) {
        held = concat(held, enc.write(c));
        counts = counts ? { present: counts.present + c.counts.present, not_found: counts.not_found + c.counts.not_found, expired: counts.expired + c.counts.expired } : c.counts;
        if (held.byteLength === 0) continue;
        const out = { bytes: held, counts };
        held = new Uint8Array(0);
        counts = undefined;
        yield out;
      }
    })(),
    end: () => ({ bytes: concat(held, enc.end()), counts }),
    failure: (problem) => {
      const tail = enc.fail(problem);
      return tail === null ? undefined : concat(tail, new Uint8Array(0));
    },
  };
}
