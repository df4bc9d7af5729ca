/**
 * The contract's batch answers (JSON and NDJSON of `{"results": [...]}`), rendered in the bulk
 * lane (off the serving thread): the lane computes rows in chunks and hands each chunk to the
 * renderer the request's Accept type chose, which turns it into bytes streamed as they come.
 * Entity dataframes and the columnar formats (CSV, Parquet, Arrow) are encoded by
 * formats/encode.ts instead (lane/frame-jobs.ts chooses).
 */
import type { BatchResult } from "../serving/batch.ts";

/** Renders one answer, chunk by chunk. A renderer is used for one answer only. */
export interface BatchRenderer {
  /** Content-Type of the answer. */
  readonly contentType: string;
  /** Bytes of the next chunk of results (the first call also opens the answer). */
  chunk(results: readonly BatchResult[]): string | Uint8Array;
  /** Bytes closing the answer after its last chunk. */
  end(): string | Uint8Array;
  /**
   * Bytes ending an answer that failed after it started (the status line is gone by then), or
   * `undefined` when the format cannot carry an error: the lane then cuts the connection, so a
   * client never takes a truncated answer for a complete one.
   */
  failure(problem: object): string | Uint8Array | undefined;
}

/** `{"results": [...]}`, byte for byte what `JSON.stringify` of the whole answer gives. */
class JsonRenderer implements BatchRenderer {
  readonly contentType = "application/json";
  private started = false;

  chunk(results: readonly BatchResult[]): string {
    let out = this.started ? "" : '{"results":[';
    for (const r of results) {
      out += this.started ? `,${JSON.stringify(r)}` : JSON.stringify(r);
      this.started = true;
    }
    return out;
  }

  end(): string {
    return this.started ? "]}" : '{"results":[]}';
  }

  failure(): undefined {
    return undefined;
  }
}

/** One result object per line; a failure after the start ends it with `{"error": PROBLEM}`. */
class NdjsonRenderer implements BatchRenderer {
  readonly contentType = "application/x-ndjson";

  chunk(results: readonly BatchResult[]): string {
    let out = "";
    for (const r of results) out += `${JSON.stringify(r)}\n`;
    return out;
  }

  end(): string {
    return "";
  }

  failure(problem: object): string {
    return `${JSON.stringify({ error: problem })}\n`;
  }
}

/** The renderer for a request's Accept header (NDJSON when asked for, else JSON). */
export function chooseRenderer(accept: string): BatchRenderer {
  return accept.includes("application/x-ndjson") ? new NdjsonRenderer() : new JsonRenderer();
}
