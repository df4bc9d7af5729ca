/**
 * Frame encoders: JSON, NDJSON, CSV, Parquet and Arrow IPC stream. Each is a pure, synchronous
 * state machine (`begin`, `write(chunk)`, `end`) turning row chunks into bytes, so a response can
 * start before the last row is computed and the encoding can run on any thread.
 *
 * Types: JSON, NDJSON and CSV carry the JSON form of each value (as the JSON API does; CSV lists
 * as JSON text, nulls as empty fields). Parquet and Arrow carry typed columns: bool, int32,
 * int64, float32, float64, utf8 strings, binary bytes, timestamps (milliseconds, UTC), and lists
 * of them (`float32[]` is list<float32>); every column is nullable.
 */
import {
  Binary,
  Bool,
  Field,
  Float32,
  Float64,
  Int32,
  Int64,
  List,
  makeBuilder,
  makeData,
  RecordBatch,
  Schema,
  Struct,
  Table,
  tableToIPC,
  TimestampMillisecond,
  Utf8,
  type DataType,
} from "apache-arrow";
import { ByteWriter, ParquetWriter, type SchemaElement } from "hyparquet-writer";
import type { ScalarType } from "../registry/dtype.ts";
import { cellToJson, type Cell, type ColumnType, type FrameChunk, type FrameColumn } from "./frame.ts";

/** Output formats, by the media type that selects them. */
export const OUTPUT_TYPES = {
  json: "application/json",
  ndjson: "application/x-ndjson",
  csv: "text/csv",
  parquet: "application/vnd.apache.parquet",
  arrow: "application/vnd.apache.arrow.stream",
} as const;
export type OutputFormat = keyof typeof OUTPUT_TYPES;

/** A streaming encoder for one response. */
export interface FrameEncoder {
  readonly format: OutputFormat;
  /** Bytes before the first row (a header, a schema). */
  begin(): Uint8Array;
  /** Bytes for one chunk of rows. */
  write(chunk: FrameChunk): Uint8Array;
  /** Bytes after the last row (a footer). */
  end(): Uint8Array;
  /**
   * Bytes that end the stream after a failure, when the format can say so in-band (NDJSON: the
   * contract's `{"error": PROBLEM}` line); `null` when it cannot, and the caller must abort the
   * response so that a truncated body is never mistaken for a complete one.
   */
  fail(problem: unknown): Uint8Array | null;
}

const utf8 = new TextEncoder();
const EMPTY = new Uint8Array(0);

/** One row as a JSON object (keys in column order). */
function rowObject(columns: readonly FrameColumn[], chunk: FrameChunk, r: number): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (let c = 0; c < columns.length; c++) {
    const col = columns[c] as FrameColumn;
    o[col.name] = cellToJson(col.type, (chunk.columns[c] as Cell[])[r] ?? null);
  }
  return o;
}

function jsonEncoder(columns: readonly FrameColumn[]): FrameEncoder {
  let first = true;
  return {
    format: "json",
    begin: () => utf8.encode('{"rows":['),
    write(chunk) {
      let text = "";
      for (let r = 0; r < chunk.rows; r++) {
        text += (first ? "" : ",") + JSON.stringify(rowObject(columns, chunk, r));
        first = false;
      }
      return utf8.encode(text);
    },
    end: () => utf8.encode("]}"),
    fail: () => null,
  };
}

function ndjsonEncoder(columns: readonly FrameColumn[]): FrameEncoder {
  return {
    format: "ndjson",
    begin: () => EMPTY,
    write(chunk) {
      let text = "";
      for (let r = 0; r < chunk.rows; r++) text += `${JSON.stringify(rowObject(columns, chunk, r))}\n`;
      return utf8.encode(text);
    },
    end: () => EMPTY,
    fail: (problem) => utf8.encode(`${JSON.stringify({ error: problem })}\n`),
  };
}

/** RFC 4180 field: quoted when it holds a comma, quote, CR or LF (or starts/ends with a space). */
export function csvField(s: string): string {
  if (s === "") return s;
  if (/[",\r\n]/.test(s) || s.startsWith(" ") || s.endsWith(" ")) return `"${s.replaceAll('"', '""')}"`;
  return s;
}

function csvCell(t: ColumnType, v: Cell): string {
  if (v === null) return "";
  const j = cellToJson(t, v);
  return csvField(typeof j === "string" ? j : JSON.stringify(j));
}

function csvEncoder(columns: readonly FrameColumn[]): FrameEncoder {
  return {
    format: "csv",
    begin: () => utf8.encode(`${columns.map((c) => csvField(c.name)).join(",")}\r\n`),
    write(chunk) {
      let text = "";
      for (let r = 0; r < chunk.rows; r++) {
        for (let c = 0; c < columns.length; c++) {
          if (c > 0) text += ",";
          text += csvCell((columns[c] as FrameColumn).type, (chunk.columns[c] as Cell[])[r] ?? null);
        }
        text += "\r\n";
      }
      return utf8.encode(text);
    },
    end: () => EMPTY,
    fail: () => null,
  };
}

// ---------------------------------------------------------------- Parquet

const PARQUET_SCALAR: Record<ScalarType, Omit<SchemaElement, "name">> = {
  bool: { type: "BOOLEAN" },
  int32: { type: "INT32" },
  int64: { type: "INT64" },
  float32: { type: "FLOAT" },
  float64: { type: "DOUBLE" },
  string: { type: "BYTE_ARRAY", converted_type: "UTF8", logical_type: { type: "STRING" } },
  bytes: { type: "BYTE_ARRAY" },
  timestamp: { type: "INT64", converted_type: "TIMESTAMP_MILLIS", logical_type: { type: "TIMESTAMP", isAdjustedToUTC: true, unit: "MILLIS" } },
};

/** The Parquet schema: lists use the standard three-level LIST structure. */
function parquetSchema(columns: readonly FrameColumn[]): SchemaElement[] {
  const out: SchemaElement[] = [{ name: "root", num_children: columns.length }];
  for (const c of columns) {
    const leaf = PARQUET_SCALAR[c.type.scalar];
    if (!c.type.list) {
      out.push({ name: c.name, repetition_type: "OPTIONAL", ...leaf });
      continue;
    }
    out.push({ name: c.name, repetition_type: "OPTIONAL", converted_type: "LIST", logical_type: { type: "LIST" }, num_children: 1 });
    out.push({ name: "list", repetition_type: "REPEATED", num_children: 1 });
    out.push({ name: "element", repetition_type: "REQUIRED", ...leaf });
  }
  return out;
}

function toBigInt(v: unknown): unknown {
  return typeof v === "number" ? BigInt(v) : v;
}

/** A column's cells in the form hyparquet-writer takes (int64 as bigint, lists as arrays). */
function parquetData(t: ColumnType, cells: readonly Cell[]): unknown[] {
  if (t.list) {
    return cells.map((v) => {
      if (v === null) return null;
      const arr = Array.from(v as ArrayLike<unknown>);
      return t.scalar === "int64" ? arr.map(toBigInt) : arr;
    });
  }
  if (t.scalar === "int64") return cells.map(toBigInt);
  return cells as unknown[];
}

/** A ByteWriter whose written bytes are taken out after each row group. */
class DrainWriter extends ByteWriter {
  take(): Uint8Array {
    const bytes = new Uint8Array(this.buffer, 0, this.index).slice();
    this.index = 0;
    return bytes;
  }
}

function parquetEncoder(columns: readonly FrameColumn[]): FrameEncoder {
  const writer = new DrainWriter(1 << 20);
  let pw: ParquetWriter | undefined;
  return {
    format: "parquet",
    begin() {
      pw = new ParquetWriter({ writer, schema: parquetSchema(columns), statistics: false, createdBy: "feature-store" });
      return writer.take();
    },
    write(chunk) {
      if (chunk.rows === 0) return EMPTY;
      // one row group per chunk; PLAIN encoding (dictionaries and statistics cost more CPU than
      // they save on feature values, which are mostly distinct), except for columns of a few
      // distinct values (statuses), which a dictionary makes smaller and faster to write
      void (pw as ParquetWriter).write({
        columnData: columns.map((c, i) => ({
          name: c.name,
          data: parquetData(c.type, chunk.columns[i] as Cell[]) as never,
          encoding: c.dictionary === true ? ("RLE_DICTIONARY" as const) : ("PLAIN" as const),
        })),
        rowGroupSize: chunk.rows,
      });
      return writer.take();
    },
    end() {
      void (pw as ParquetWriter).finish();
      return writer.take();
    },
    fail: () => null,
  };
}

// ---------------------------------------------------------------- Arrow IPC stream

function arrowScalar(s: ScalarType): DataType {
  switch (s) {
    case "bool":
      return new Bool();
    case "int32":
      return new Int32();
    case "int64":
      return new Int64();
    case "float32":
      return new Float32();
    case "float64":
      return new Float64();
    case "string":
      return new Utf8();
    case "bytes":
      return new Binary();
    case "timestamp":
      return new TimestampMillisecond("UTC");
  }
}

function arrowType(t: ColumnType): DataType {
  const s = arrowScalar(t.scalar);
  return t.list ? new List(new Field("item", s, false)) : s;
}

function arrowCells(t: ColumnType, cells: readonly Cell[]): unknown[] {
  if (t.scalar !== "int64") return t.list ? cells.map((v) => (v === null ? null : Array.from(v as ArrayLike<unknown>))) : (cells as unknown[]);
  if (!t.list) return cells.map(toBigInt);
  return cells.map((v) => (v === null ? null : Array.from(v as ArrayLike<unknown>, toBigInt)));
}

function arrowEncoder(columns: readonly FrameColumn[]): FrameEncoder {
  const schema = new Schema(columns.map((c) => new Field(c.name, arrowType(c.type), true)));
  const struct = new Struct(schema.fields);
  // A stream is the schema message, record batch messages, then an end-of-stream marker. Each
  // chunk is serialised as a one-batch stream; its schema prefix (identical every time: no
  // dictionaries) and its 8-byte end marker are cut off.
  const empty = tableToIPC(new Table(schema), "stream");
  const prefix = empty.byteLength - 8;
  return {
    format: "arrow",
    begin: () => empty.slice(0, prefix),
    write(chunk) {
      if (chunk.rows === 0) return EMPTY;
      const children = columns.map((c, i) => {
        const b = makeBuilder({ type: (schema.fields[i] as Field).type, nullValues: [null] });
        for (const v of arrowCells(c.type, chunk.columns[i] as Cell[])) b.append(v);
        return b.finish().flush();
      });
      const batch = new RecordBatch(schema, makeData({ type: struct, length: chunk.rows, nullCount: 0, children }));
      const bytes = tableToIPC(new Table([batch]), "stream");
      return bytes.slice(prefix, bytes.byteLength - 8);
    },
    end: () => empty.slice(prefix),
    fail: () => null,
  };
}

/** A new encoder for `format` over `columns`. */
export function createEncoder(format: OutputFormat, columns: readonly FrameColumn[]): FrameEncoder {
  switch (format) {
    case "json":
      return jsonEncoder(columns);
    case "ndjson":
      return ndjsonEncoder(columns);
    case "csv":
      return csvEncoder(columns);
    case "parquet":
      return parquetEncoder(columns);
    case "arrow":
      return arrowEncoder(columns);
  }
}
