/**
 * Point-in-time retrieval for training data: for every (entity, timestamp) row and feature,
 * the value current at that timestamp. Nothing written with a later event time can leak in.
 */
import type { AsOfKey, Stores } from "../store/types.ts";
import type { z } from "@hono/zod-openapi";
import { formatTime } from "../lib/time.ts";
import type { BatchResult as BatchResultSchema } from "../schemas.ts";
import { dbCall, type Deps } from "./deps.ts";
import { renderResult, resolveFeatures, serveValue, type ServedValue } from "./features.ts";

/** One requested row: an entity and the time to read it at (epoch ms). */
export interface BatchRow {
  entity_id: string;
  at: number;
}

/** One result row, as the API returns it. */
export type BatchResult = z.output<typeof BatchResultSchema>;

/** Values served per status in one chunk (for `feature_store_lookups_total`). */
export type StatusCounts = Record<ServedValue["status"], number>;

/** One chunk of results, in input order, and what they counted. */
export interface BatchChunk {
  results: BatchResult[];
  counts: StatusCounts;
}

/** Keys (rows x features) per database call: bounds memory and each call's time, and lets a stream start early. */
export const CHUNK_KEYS = 20_000;

/**
 * Resolves the references up front (so a 400/404 comes before any output), then yields result
 * chunks in input order. Runs in the bulk lane (src/lane): the caller renders each chunk into
 * the answer's format and counts its lookups.
 */
export function lookupBatch(
  deps: Pick<Deps, "registry" | "log"> & { stores: Pick<Stores, "offline"> },
  tenant: string,
  rows: readonly BatchRow[],
  featureNames: readonly string[],
  chunkKeys = CHUNK_KEYS,
): AsyncGenerator<BatchChunk> {
  const { refs, defs } = resolveFeatures(deps.registry.current, tenant, featureNames);
  return (async function* () {
    const nf = defs.length;
    const CHUNK_ROWS = Math.max(1, Math.floor(chunkKeys / nf));
    for (let start = 0; start < rows.length; start += CHUNK_ROWS) {
      const chunk = rows.slice(start, start + CHUNK_ROWS);
      const keys: AsOfKey[] = new Array(chunk.length * nf);
      for (let r = 0; r < chunk.length; r++) {
        const row = chunk[r] as BatchRow;
        for (let f = 0; f < nf; f++) keys[r * nf + f] = { feature_id: (defs[f] as (typeof defs)[number]).id, entity_id: row.entity_id, at: row.at };
      }
      const found = await dbCall(deps, "point-in-time lookup", () => deps.stores.offline.getAsOf(keys));
      const counts: StatusCounts = { present: 0, not_found: 0, expired: 0 };
      const out: BatchResult[] = new Array(chunk.length);
      const served: ServedValue[] = new Array(nf);
      for (let r = 0; r < chunk.length; r++) {
        const row = chunk[r] as BatchRow;
        for (let f = 0; f < nf; f++) {
          const s = serveValue(defs[f] as (typeof defs)[number], found[r * nf + f], row.at);
          counts[s.status]++;
          served[f] = s;
        }
        out[r] = { entity_id: row.entity_id, timestamp: formatTime(row.at), ...renderResult(refs, served) };
      }
      yield { results: out, counts };
    }
  })();
}
