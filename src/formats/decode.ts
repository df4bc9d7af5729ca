/**
 * Entity-dataframe decoders: a request body (JSON rows, NDJSON, CSV or Parquet) into named
 * columns of raw values, plus inference of a passthrough column's type. Pure: no I/O.
 *
 * Raw values: JSON and NDJSON give JSON values; CSV gives strings (an empty field is `null`);
 * Parquet gives typed values (bigint for INT64, Date for timestamps) and the column types of its
 * schema. Row numbers in errors count data rows from 0, as in `rows[N]`.
 */
import { CsvError, parse as parseCsv } from "csv-parse/sync";
import { parquetMetadata, parquetRead, type SchemaElement } from "hyparquet";
import { AppError } from "../errors.ts";
import { parseDtype } from "../registry/dtype.ts";
import type { Cell, ColumnType } from "./frame.ts";

/** Request body formats, by the media types that select them. */
export const INPUT_TYPES = {
  json: ["application/json"],
  ndjson: ["application/x-ndjson", "application/jsonl", "application/ndjson"],
  csv: ["text/csv"],
  parquet: ["application/vnd.apache.parquet", "application/x-parquet", "application/parquet"],
} as const;
export type InputFormat = keyof typeof INPUT_TYPES;

/** The input format of a `Content-Type` (parameters ignored); `null` when it is none of them. */
export function inputFormatOf(contentType: string | undefined): InputFormat | null {
  const mt = (contentType ?? "application/json").split(";")[0]?.trim().toLowerCase() ?? "";
  if (mt === "" || mt.endsWith("+json")) return "json";
  for (const [f, types] of Object.entries(INPUT_TYPES)) if ((types as readonly string[]).includes(mt)) return f as InputFormat;
  return null;
}

/** Columns of raw values, all `rows` long, in input order. */
export interface InputFrame {
  names: string[];
  columns: unknown[][];
  rows: number;
  /** Declared column types (Parquet), `null` where a type must be inferred from the values. */
  types: (ColumnType | null)[];
  /** Values are CSV text: numbers and booleans are recognised by inference. */
  textual: boolean;
}

function bad(message: string, path?: string): AppError {
  return new AppError("invalid_request", message, path ? { errors: [{ path, message }] } : {});
}

/** Rows of JSON objects into columns (keys in first-seen order; a key a row lacks is null). */
export function frameFromObjects(rows: readonly unknown[], path = "rows"): InputFrame {
  const index = new Map<string, number>();
  const columns: unknown[][] = [];
  for (let r = 0; r < rows.length; r++) {
    const row = rows[r];
    if (typeof row !== "object" || row === null || Array.isArray(row)) throw bad(`${path}[${r}] is not an object`, `${path}[${r}]`);
    for (const [k, v] of Object.entries(row)) {
      let c = index.get(k);
      if (c === undefined) {
        c = columns.length;
        index.set(k, c);
        columns.push(new Array<unknown>(rows.length).fill(null));
      }
      (columns[c] as unknown[])[r] = v;
    }
  }
  const names = [...index.keys()];
  return { names, columns, rows: rows.length, types: names.map(() => null), textual: false };
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

function text(bytes: Uint8Array): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw bad("request body is not valid UTF-8");
  }
}

function decodeNdjson(bytes: Uint8Array): InputFrame {
  const lines = text(bytes).split("\n");
  const rows: unknown[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] as string).trim();
    if (line === "") continue;
    try {
      rows.push(JSON.parse(line));
    } catch (e) {
      throw bad(`line ${i + 1} of the NDJSON body is not valid JSON: ${e instanceof Error ? e.message : String(e)}`, `rows[${rows.length}]`);
    }
  }
  if (rows.length === 0) throw bad("request body has no rows");
  return frameFromObjects(rows);
}

function decodeCsv(bytes: Uint8Array): InputFrame {
  // Records go straight into columns as they are parsed (none is kept: a 1M-row body's record
  // arrays were ~100 MB of peak memory); field counts are checked below (naming the row).
  let header: string[] | undefined;
  const columns: unknown[][] = [];
  let rows = 0;
  let badRow: { row: number; fields: number } | undefined;
  try {
    // a quote inside an unquoted field is text
    parseCsv(text(bytes).replace(/^\uFEFF/, ""), {
      skip_empty_lines: true,
      relax_column_count: true,
      relax_quotes: true,
      on_record: (record: string[]) => {
        if (header === undefined) {
          header = record;
          for (let c = 0; c < record.length; c++) columns.push([]);
        } else if (record.length !== header.length) {
          badRow ??= { row: rows, fields: record.length };
          rows++;
        } else {
          for (let c = 0; c < record.length; c++) (columns[c] as unknown[]).push(record[c] === "" ? null : record[c]);
          rows++;
        }
        return null;
      },
    });
  } catch (e) {
    if (!(e instanceof CsvError)) throw e;
    // `records` counts the records before the bad one, the header included
    const row = (typeof e.records === "number" ? e.records : 1) - 1;
    throw bad(`CSV is malformed at data row ${row}: ${e.message}`, `rows[${row}]`);
  }
  if (!header || rows === 0) throw bad("a CSV body needs a header line and at least one row");
  const seen = new Set<string>();
  for (const h of header) {
    if (h === "") throw bad("the CSV header has an empty column name");
    if (seen.has(h)) throw bad(`the CSV header names column ${JSON.stringify(h)} twice`);
    seen.add(h);
  }
  if (badRow) throw bad(`CSV row ${badRow.row} has ${badRow.fields} fields; the header has ${header.length}`, `rows[${badRow.row}]`);
  return { names: header, columns, rows, types: header.map(() => null), textual: true };
}

/** The column type a Parquet leaf maps to, `null` for anything nested or unusual (inferred). */
function parquetType(e: SchemaElement): ColumnType | null {
  if (e.num_children) return null;
  const lt = e.logical_type?.type;
  const name = (() => {
    if (lt === "TIMESTAMP" || e.converted_type === "TIMESTAMP_MILLIS" || e.converted_type === "TIMESTAMP_MICROS" || e.type === "INT96") return "timestamp";
    switch (e.type) {
      case "BOOLEAN":
        return "bool";
      case "INT32":
        return e.converted_type === "DATE" || lt === "DATE" ? null : "int32";
      case "INT64":
        return "int64";
      case "FLOAT":
        return "float32";
      case "DOUBLE":
        return "float64";
      case "BYTE_ARRAY":
        return e.converted_type === "UTF8" || lt === "STRING" || lt === "ENUM" ? "string" : null;
      default:
        return null;
    }
  })();
  return name ? parseDtype(name) : null;
}

async function decodeParquet(bytes: Uint8Array): Promise<InputFrame> {
  const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  let metadata;
  try {
    metadata = parquetMetadata(file);
  } catch (e) {
    throw bad(`request body is not a Parquet file (${e instanceof Error ? e.message.replace(/^parquet /, "") : "unreadable"})`);
  }
  const rows = Number(metadata.num_rows);
  if (rows === 0) throw bad("the Parquet file has no rows");
  // top-level columns: the root's children, each followed by its own subtree
  const names: string[] = [];
  const types: (ColumnType | null)[] = [];
  const schema = metadata.schema;
  let i = 1;
  const skip = (at: number): number => {
    let next = at + 1;
    for (let k = 0; k < ((schema[at] as SchemaElement).num_children ?? 0); k++) next = skip(next);
    return next;
  };
  while (i < schema.length) {
    const e = schema[i] as SchemaElement;
    names.push(e.name);
    types.push(parquetType(e));
    i = skip(i);
  }
  const columns = names.map(() => new Array<unknown>(rows));
  const index = new Map(names.map((n, k) => [n, k]));
  try {
    await parquetRead({
      file,
      metadata,
      onChunk({ columnName, columnData, rowStart }) {
        const col = columns[index.get(columnName) ?? -1];
        if (!col) return;
        for (let r = 0; r < columnData.length; r++) col[rowStart + r] = columnData[r] ?? null;
      },
    });
  } catch (e) {
    throw bad(`the Parquet file could not be read (${e instanceof Error ? e.message.replace(/^parquet /, "") : "unreadable"})`);
  }
  return { names, columns, rows, types, textual: false };
}

/** Decodes a non-JSON body (JSON bodies carry options too and are validated by the API layer). */
export async function decodeFrame(format: Exclude<InputFormat, "json">, bytes: Uint8Array): Promise<InputFrame> {
  if (bytes.byteLength === 0) throw bad("request body is empty");
  switch (format) {
    case "ndjson":
      return decodeNdjson(bytes);
    case "csv":
      return decodeCsv(bytes);
    case "parquet":
      return decodeParquet(bytes);
  }
}

// ---------------------------------------------------------------- passthrough columns

const INT_TEXT = /^[+-]?\d{1,19}$/;
const FLOAT_TEXT = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const BOOL = parseDtype("bool") as ColumnType;
const INT64 = parseDtype("int64") as ColumnType;
const FLOAT64 = parseDtype("float64") as ColumnType;
const STRING = parseDtype("string") as ColumnType;
const TIMESTAMP = parseDtype("timestamp") as ColumnType;

/**
 * A passthrough column's type and cells: its declared type when it has one (Parquet); else the
 * narrowest of bool, int64, float64 that holds every non-null value (CSV text is recognised);
 * else strings (a JSON object or array as its JSON text).
 */
export function passthroughColumn(values: readonly unknown[], declared: ColumnType | null, textual: boolean): { type: ColumnType; cells: Cell[] } {
  if (declared) {
    if (declared.scalar === "timestamp") return { type: declared, cells: values.map((v) => (v instanceof Date ? v.getTime() : (v as Cell) ?? null)) };
    return { type: declared, cells: values as Cell[] };
  }
  let bool = true;
  let int = true;
  let num = true;
  let date = true;
  for (const v of values) {
    if (v === null || v === undefined) continue;
    if (textual) {
      const s = v as string;
      bool &&= s === "true" || s === "false";
      int &&= INT_TEXT.test(s) && Number.isSafeInteger(Number(s));
      num &&= FLOAT_TEXT.test(s);
      date = false;
    } else {
      bool &&= typeof v === "boolean";
      int &&= (typeof v === "number" && Number.isSafeInteger(v)) || typeof v === "bigint";
      num &&= typeof v === "number";
      date &&= v instanceof Date;
    }
    if (!bool && !int && !num && !date) break;
  }
  const nil = (v: unknown) => v === null || v === undefined;
  if (bool) return { type: BOOL, cells: values.map((v) => (nil(v) ? null : textual ? v === "true" : (v as boolean))) };
  if (int) return { type: INT64, cells: values.map((v) => (nil(v) ? null : textual ? Number(v) : (v as number | bigint))) };
  if (num) return { type: FLOAT64, cells: values.map((v) => (nil(v) ? null : Number(v))) };
  if (date) return { type: TIMESTAMP, cells: values.map((v) => (nil(v) ? null : (v as Date).getTime())) };
  return { type: STRING, cells: values.map((v) => (nil(v) ? null : typeof v === "string" ? v : v instanceof Date ? v.toISOString() : typeof v === "bigint" ? v.toString() : JSON.stringify(v))) };
}
