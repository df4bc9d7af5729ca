/** A materialization job row as both SQL backends store it (JSON fields as text), and its decoding. */
import type { JobRow } from "./types.ts";

/** The stored form of a {@link JobRow}. */
export interface JobRecord extends Omit<JobRow, "args" | "progress" | "result"> {
  args: string;
  progress: string;
  result: string | null;
}

/** Decodes a stored job row. */
export function toJob(r: JobRecord): JobRow {
  return { ...r, args: JSON.parse(r.args), progress: JSON.parse(r.progress), result: r.result === null ? null : JSON.parse(r.result) };
}
