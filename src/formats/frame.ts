/**
 * The column model shared by the training-data decoders and encoders: a frame is a schema (typed,
 * named columns) and a sequence of chunks, each holding a slice of rows column by column.
 *
 * Cells are plain JS values: bool -> boolean; int32, float32, float64 -> number; int64 -> number
 * (when |v| <= 2^53-1) or bigint; string -> string; bytes -> Uint8Array; timestamp -> epoch
 * milliseconds (number); a list -> an array of its scalars (`Float32Array` for float32[]);
 * `null` for a missing value. These are the stored forms of registry/dtype.ts, so a decoded
 * feature value goes into a chunk as is.
 *
 * Pure: no I/O, no Deps, so encoders can run on any thread (the serving lane's workers).
 */
import { parseDtype, toJsonValue, type Dtype, type StoredValue } from "../registry/dtype.ts";

/** A column's type: a dtype (a scalar, or a list of one). */
export type ColumnType = Dtype;

/** A named, typed column. Every column is nullable. */
export interface FrameColumn {
  name: string;
  type: ColumnType;
  /** few distinct values (a status): dictionary-encoded where the format allows (Parquet) */
  dictionary?: boolean;
}

/** One cell (see the module comment). */
export type Cell = boolean | number | bigint | string | Uint8Array | Float32Array | readonly unknown[] | null;

/** A slice of rows, column-major: `columns[c][r]`, every column `rows` long. */
export interface FrameChunk {
  rows: number;
  columns: Cell[][];
}

export const STRING = parseDtype("string") as ColumnType;
export const TIMESTAMP = parseDtype("timestamp") as ColumnType;

/**
 * The JSON form of a cell, as the JSON API serves values (int64 beyond 2^53-1 as a decimal
 * string, float32 as its shortest decimal, bytes as base64, timestamps as RFC 3339).
 */
export function cellToJson(t: ColumnType, v: Cell): unknown {
  return v === null ? null : toJsonValue(t, v as StoredValue);
}
