/**
 * Source readers: list a source's columns (for validation at register time) and stream its
 * rows in bounded chunks, each with the position to resume after it. Files are read in path
 * order and a chunk never spans two files, so a chunk's rows are numbered consecutively.
 *
 * Parquet (hyparquet, pure JS, with hyparquet-compressors for gzip, zstd, brotli and lz4, whose
 * one WebAssembly module is inlined: nothing is read from disk at run time but the data), CSV
 * (csv-parse, streamed), PostgreSQL (postgres.js cursor, ordered by event time).
 */
import { open, stat } from "node:fs/promises";
import { createReadStream } from "node:fs";
import { glob } from "node:fs/promises";
import { parse as parseCsv } from "csv-parse";
import { parquetMetadataAsync, parquetRead, parquetSchema, type AsyncBuffer, type FileMetaData } from "hyparquet";
import { compressors } from "hyparquet-compressors";
import type postgres from "postgres";
import type { ColumnKind, SourceSpec } from "./spec.ts";

/** A source that cannot be read (missing file, unreachable database, unreadable format). */
export class SourceError extends Error {
  override name = "SourceError";
}

/** Where a run stands in a file source: rows done in file `file` (index in path order). */
export interface FilePosition {
  kind: "files";
  file: number;
  path: string;
  size: number;
  mtime: number;
  rows: number;
}
/** Where a run stands in a PostgreSQL source: every row with event time < `after` is stored. */
export interface TablePosition {
  kind: "table";
  after: number | null;
  rows: number;
}
export type Position = FilePosition | TablePosition;

/** A bounded chunk of rows. */
export interface Chunk {
  /** cells in the order of the requested columns */
  rows: unknown[][];
  /** where the rows come from (a file path, or `table x` / `query`) */
  part: string;
  /** 1-based number of the first row in `part` (data rows; a CSV header is not counted) */
  firstRow: number;
  /** resume here after this chunk is stored */
  position: Position;
  /** progress so far in the reader's unit (rows, or bytes for CSV) */
  done: number;
}

/** What a reader knows before reading. */
export interface Description {
  columns: Map<string, ColumnKind>;
  /** files matched (file sources) */
  parts: string[];
  /** total in the progress unit (rows for Parquet, bytes for CSV), when known */
  total?: number | undefined;
  /** "rows" or "bytes" */
  unit: "rows" | "bytes";
}

/** Reads one source. */
export interface SourceReader {
  describe(): Promise<Description>;
  /** Streams `columns` from `from` (null: the beginning), within [start, end) where the source can filter. */
  read(columns: string[], from: Position | null, chunkRows: number, window: { start: number | null; end: number | null }, signal?: AbortSignal): AsyncGenerator<Chunk>;
}

/** The reader for a source. `env` supplies PostgreSQL URLs (by the variable name the spec gives). */
export function openReader(spec: SourceSpec, env: Record<string, string | undefined> = process.env): SourceReader {
  switch (spec.kind) {
    case "parquet":
      return new ParquetReader(spec.path);
    case "csv":
      return new CsvReader(spec.path, spec.delimiter ?? ",");
    case "postgres":
      return new PostgresReader(spec, env);
  }
}

/** The files a path or glob names, sorted; a SourceError when there are none. */
export async function matchFiles(pattern: string): Promise<string[]> {
  if (!/[*?[{]/.test(pattern)) {
    try {
      const s = await stat(pattern);
      if (!s.isFile()) throw new SourceError(`${pattern} is not a file`);
    } catch (e) {
      if (e instanceof SourceError) throw e;
      throw new SourceError(`cannot read ${pattern}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    return [pattern];
  }
  const out: string[] = [];
  for await (const f of glob(pattern)) out.push(f);
  if (out.length === 0) throw new SourceError(`no file matches ${pattern}`);
  return out.sort();
}

async function fingerprint(path: string): Promise<{ size: number; mtime: number }> {
  try {
    const s = await stat(path);
    return { size: s.size, mtime: Math.floor(s.mtimeMs) };
  } catch (e) {
    throw new SourceError(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** The file to start from: the saved position's file when it is unchanged, else the first. */
function resumeAt(files: string[], fps: { size: number; mtime: number }[], from: Position | null): { file: number; rows: number } {
  if (from?.kind !== "files") return { file: 0, rows: 0 };
  const fp = fps[from.file];
  if (files[from.file] !== from.path || !fp || fp.size !== from.size || fp.mtime !== from.mtime) return { file: 0, rows: 0 };
  return { file: from.file, rows: from.rows };
}

// ───────────────────────────── Parquet ─────────────────────────────

/** An AsyncBuffer over a file handle (one open file, positioned reads). */
async function fileBuffer(path: string): Promise<AsyncBuffer & { close(): Promise<void> }> {
  let fh;
  try {
    fh = await open(path, "r");
  } catch (e) {
    throw new SourceError(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const { size } = await fh.stat();
  const handle = fh;
  return {
    byteLength: size,
    async slice(start: number, end?: number): Promise<ArrayBuffer> {
      const len = (end ?? size) - start;
      const buf = new Uint8Array(len);
      let got = 0;
      while (got < len) {
        const { bytesRead } = await handle.read(buf, got, len - got, start + got);
        if (bytesRead === 0) throw new SourceError(`${path} ended early (was it changed while being read?)`);
        got += bytesRead;
      }
      return buf.buffer;
    },
    close: () => handle.close(),
  };
}

/** Rows decoded per Parquet read at most (a larger row group is read in parts). */
const READ_ROWS = 100_000;

/** Parquet parsers that keep timestamps as epoch milliseconds (no Date per value). */
const PARSERS = {
  timestampFromMilliseconds: (v: bigint) => Number(v),
  timestampFromMicroseconds: (v: bigint) => Number(v / 1000n),
  timestampFromNanoseconds: (v: bigint) => Number(v / 1_000_000n),
  dateFromDays: (v: number) => v * 86_400_000,
};

interface SchemaNode {
  element: { name: string; type?: string; converted_type?: string; logical_type?: { type: string }; repetition_type?: string };
  children: SchemaNode[];
}

function parquetKind(n: SchemaNode): ColumnKind {
  const e = n.element;
  if (e.converted_type === "LIST" || e.logical_type?.type === "LIST") {
    let leaf = n.children[0];
    while (leaf && leaf.children.length > 0 && leaf.children.length === 1) leaf = leaf.children[0];
    return { kind: "list", of: leaf ? parquetKind(leaf) : { kind: "any" } };
  }
  if (e.repetition_type === "REPEATED" && n.children.length === 0) return { kind: "list", of: parquetKind({ ...n, element: { ...e, repetition_type: "REQUIRED" } }) };
  if (n.children.length > 0) return { kind: "any" };
  const lt = e.logical_type?.type;
  const ct = e.converted_type;
  if (lt === "TIMESTAMP" || ct === "TIMESTAMP_MILLIS" || ct === "TIMESTAMP_MICROS" || ct === "DATE" || lt === "DATE" || e.type === "INT96") return { kind: "timestamp" };
  if (lt === "STRING" || ct === "UTF8" || ct === "ENUM" || lt === "ENUM" || lt === "UUID" || ct === "JSON" || lt === "JSON") return { kind: "string" };
  if (ct === "DECIMAL" || lt === "DECIMAL") return { kind: "float" };
  switch (e.type) {
    case "BOOLEAN":
      return { kind: "bool" };
    case "INT32":
    case "INT64":
      return { kind: "int" };
    case "FLOAT":
    case "DOUBLE":
      return { kind: "float" };
    case "BYTE_ARRAY":
    case "FIXED_LEN_BYTE_ARRAY":
      return { kind: "bytes" };
    default:
      return { kind: "any" };
  }
}

class ParquetReader implements SourceReader {
  constructor(private readonly pattern: string) {}

  private async meta(path: string): Promise<{ buf: Awaited<ReturnType<typeof fileBuffer>>; metadata: FileMetaData }> {
    const buf = await fileBuffer(path);
    try {
      return { buf, metadata: await parquetMetadataAsync(buf) };
    } catch (e) {
      await buf.close();
      throw new SourceError(`${path} is not a readable Parquet file: ${(e as Error).message}`);
    }
  }

  async describe(): Promise<Description> {
    const parts = await matchFiles(this.pattern);
    let columns: Map<string, ColumnKind> | undefined;
    let total = 0;
    for (const p of parts) {
      const { buf, metadata } = await this.meta(p);
      await buf.close();
      total += Number(metadata.num_rows);
      if (!columns) {
        columns = new Map();
        for (const c of (parquetSchema(metadata) as unknown as SchemaNode).children) columns.set(c.element.name, parquetKind(c));
      }
    }
    return { columns: columns ?? new Map(), parts, total, unit: "rows" };
  }

  async *read(columns: string[], from: Position | null, chunkRows: number, _w: unknown, signal?: AbortSignal): AsyncGenerator<Chunk> {
    const files = await matchFiles(this.pattern);
    const fps = await Promise.all(files.map(fingerprint));
    const start = resumeAt(files, fps, from);
    let done = 0;
    for (let f = 0; f < files.length; f++) {
      const path = files[f] as string;
      const { buf, metadata } = await this.meta(path);
      try {
        const n = Number(metadata.num_rows);
        if (f < start.file) {
          done += n;
          continue;
        }
        const have = new Set((parquetSchema(metadata) as unknown as SchemaNode).children.map((c) => c.element.name));
        const missing = columns.filter((c) => !have.has(c));
        if (missing.length > 0) throw new SourceError(`${path} has no column ${missing.map((m) => JSON.stringify(m)).join(", ")}`);
        let row = f === start.file ? start.rows : 0;
        done += row;
        // Reads follow row-group boundaries, a whole group (or READ_ROWS of a larger one, pages
        // found through the offset index when the file has one) at a time, so no page is decoded
        // twice; the rows read are then handed out in chunks.
        const fp = fps[f] as { size: number; mtime: number };
        let groupStart = 0;
        for (const g of metadata.row_groups) {
          const groupEnd = groupStart + Number(g.num_rows);
          while (row < groupEnd) {
            signal?.throwIfAborted();
            const end = Math.min(groupEnd, row + Math.max(chunkRows, READ_ROWS));
            let rows: unknown[][] = [];
            try {
              await parquetRead({ file: buf, metadata, columns, rowStart: row, rowEnd: end, parsers: PARSERS, compressors, useOffsetIndex: true, onComplete: (r) => void (rows = r) });
            } catch (e) {
              throw new SourceError(`${path}: cannot read rows ${row + 1}-${end}: ${(e as Error).message}`);
            }
            for (let at = 0; at < rows.length; at += chunkRows) {
              signal?.throwIfAborted();
              const part = rows.slice(at, at + chunkRows);
              const first = row + 1;
              row += part.length;
              done += part.length;
              yield { rows: part, part: path, firstRow: first, done, position: { kind: "files", file: f, path, size: fp.size, mtime: fp.mtime, rows: row } };
            }
            row = end;
          }
          groupStart = groupEnd;
        }
      } finally {
        await buf.close();
      }
    }
  }
}

// ───────────────────────────── CSV ─────────────────────────────

class CsvReader implements SourceReader {
  constructor(
    private readonly pattern: string,
    private readonly delimiter: string,
  ) {}

  private async header(path: string): Promise<string[]> {
    const parser = createReadStream(path).pipe(parseCsv({ bom: true, delimiter: this.delimiter, to_line: 1, relax_column_count: true }));
    try {
      for await (const rec of parser) return rec as string[];
    } catch (e) {
      throw new SourceError(`${path}: cannot parse the CSV header: ${(e as Error).message}`);
    }
    throw new SourceError(`${path} is empty (a CSV source needs a header line)`);
  }

  async describe(): Promise<Description> {
    const parts = await matchFiles(this.pattern);
    const header = await this.header(parts[0] as string);
    let total = 0;
    for (const p of parts) total += (await fingerprint(p)).size;
    // CSV cells are text: their type is checked value by value when loading
    return { columns: new Map(header.map((h) => [h, { kind: "any" } as ColumnKind])), parts, total, unit: "bytes" };
  }

  async *read(columns: string[], from: Position | null, chunkRows: number, _w: unknown, signal?: AbortSignal): AsyncGenerator<Chunk> {
    const files = await matchFiles(this.pattern);
    const fps = await Promise.all(files.map(fingerprint));
    const start = resumeAt(files, fps, from);
    let bytesBefore = 0;
    for (let f = 0; f < files.length; f++) {
      const path = files[f] as string;
      const fp = fps[f] as { size: number; mtime: number };
      if (f < start.file) {
        bytesBefore += fp.size;
        continue;
      }
      const skip = f === start.file ? start.rows : 0;
      const parser = createReadStream(path).pipe(parseCsv({ bom: true, delimiter: this.delimiter, relax_column_count: true }));
      let index: number[] | undefined;
      let width = 0;
      let row = 0;
      let rows: unknown[][] = [];
      let first = skip + 1;
      try {
        for await (const rec of parser as AsyncIterable<string[]>) {
          if (!index) {
            const missing = columns.filter((c) => !rec.includes(c));
            if (missing.length > 0) throw new SourceError(`${path} has no column ${missing.map((m) => JSON.stringify(m)).join(", ")}`);
            index = columns.map((c) => rec.indexOf(c));
            width = rec.length;
            continue;
          }
          row++;
          if (row <= skip) continue;
          // a row with the wrong number of fields becomes a row of one marker the loader rejects
          rows.push(rec.length === width ? index.map((i) => rec[i]) : [new FieldCountError(rec.length, width)]);
          if (rows.length >= chunkRows) {
            signal?.throwIfAborted();
            yield { rows, part: path, firstRow: first, done: bytesBefore + parser.info.bytes, position: { kind: "files", file: f, path, size: fp.size, mtime: fp.mtime, rows: row } };
            rows = [];
            first = row + 1;
          }
        }
      } catch (e) {
        if (e instanceof SourceError || signal?.aborted) throw e;
        throw new SourceError(`${path}: cannot parse CSV after row ${row}: ${(e as Error).message}`);
      }
      if (!index) throw new SourceError(`${path} is empty (a CSV source needs a header line)`);
      if (rows.length > 0) yield { rows, part: path, firstRow: first, done: bytesBefore + fp.size, position: { kind: "files", file: f, path, size: fp.size, mtime: fp.mtime, rows: row } };
      bytesBefore += fp.size;
    }
  }
}

/** Marks a CSV row whose field count differs from the header's. */
export class FieldCountError {
  constructor(
    readonly got: number,
    readonly want: number,
  ) {}
  get message(): string {
    return `has ${this.got} fields; the header has ${this.want}`;
  }
}

// ───────────────────────────── PostgreSQL ─────────────────────────────

const PG_KINDS: Record<number, ColumnKind> = {
  16: { kind: "bool" },
  20: { kind: "int" },
  21: { kind: "int" },
  23: { kind: "int" },
  700: { kind: "float" },
  701: { kind: "float" },
  1700: { kind: "float" },
  25: { kind: "string" },
  1043: { kind: "string" },
  1042: { kind: "string" },
  19: { kind: "string" },
  2950: { kind: "string" },
  17: { kind: "bytes" },
  1114: { kind: "timestamp" },
  1184: { kind: "timestamp" },
  1082: { kind: "timestamp" },
  114: { kind: "any" },
  3802: { kind: "any" },
  1000: { kind: "list", of: { kind: "bool" } },
  1005: { kind: "list", of: { kind: "int" } },
  1007: { kind: "list", of: { kind: "int" } },
  1016: { kind: "list", of: { kind: "int" } },
  1021: { kind: "list", of: { kind: "float" } },
  1022: { kind: "list", of: { kind: "float" } },
  1231: { kind: "list", of: { kind: "float" } },
  1009: { kind: "list", of: { kind: "string" } },
  1015: { kind: "list", of: { kind: "string" } },
  1115: { kind: "list", of: { kind: "timestamp" } },
  1185: { kind: "list", of: { kind: "timestamp" } },
};

function quoteIdent(c: string): string {
  return `"${c.replaceAll('"', '""')}"`;
}

class PostgresReader implements SourceReader {
  constructor(
    private readonly spec: Extract<SourceSpec, { kind: "postgres" }>,
    private readonly env: Record<string, string | undefined>,
  ) {}

  private label(): string {
    return this.spec.table !== undefined ? `table ${this.spec.table}` : "query";
  }

  private async connect(): Promise<postgres.Sql> {
    const url = this.env[this.spec.url_env];
    if (!url) throw new SourceError(`environment variable ${this.spec.url_env} (the connection URL of source ${this.spec.name}) is not set`);
    // loaded on first use: a server on the embedded stores never loads the PostgreSQL client
    const { default: postgres } = await import("postgres");
    try {
      // int8 and numeric stay strings (exact); timestamps come back as Date; the session is UTC
      return postgres(url, { max: 1, connect_timeout: 10, idle_timeout: 5, onnotice: () => {}, connection: { TimeZone: "UTC", application_name: "feature-store-materialize" } });
    } catch (e) {
      // not the parser's message: it may quote the URL, password included
      throw new SourceError(`source ${this.spec.name}: ${this.spec.url_env} does not hold a valid PostgreSQL connection URL (postgres://user:password@host:port/db; percent-encode special characters in the password)`);
    }
  }

  private from(): string {
    return this.spec.table !== undefined ? this.spec.table.split(".").map(quoteIdent).join(".") : `(${this.spec.query}) AS src`;
  }

  private fail(e: unknown): SourceError {
    if (e instanceof SourceError) return e;
    const err = e as Error & { code?: string };
    return new SourceError(`source ${this.spec.name} (${this.label()} via ${this.spec.url_env}): ${err.code && !err.message.includes(err.code) ? `${err.code}: ` : ""}${err.message}`);
  }

  async describe(): Promise<Description> {
    const sql = await this.connect();
    try {
      const r = await sql.unsafe(`SELECT * FROM ${this.from()} LIMIT 0`);
      const columns = new Map<string, ColumnKind>();
      for (const c of r.columns) columns.set(c.name, PG_KINDS[c.type] ?? { kind: "any" });
      // a table's planner estimate gives progress a total (and an ETA) without counting it
      let total: number | undefined;
      if (this.spec.table !== undefined) {
        const [est] = await sql<{ n: string }[]>`SELECT reltuples::bigint::text AS n FROM pg_class WHERE oid = to_regclass(${this.spec.table})`;
        if (est && Number(est.n) > 0) total = Number(est.n);
      }
      return { columns, parts: [], total, unit: "rows" };
    } catch (e) {
      throw this.fail(e);
    } finally {
      await sql.end({ timeout: 1 }).catch(() => {});
    }
  }

  async *read(columns: string[], from: Position | null, chunkRows: number, window: { start: number | null; end: number | null }, signal?: AbortSignal): AsyncGenerator<Chunk> {
    const sql = await this.connect();
    const ev = quoteIdent(this.spec.event_time_column);
    const conds: string[] = [];
    const params: string[] = [];
    const after = from?.kind === "table" ? from.after : null;
    const lower = after !== null && (window.start === null || after > window.start) ? after : window.start;
    if (lower !== null) conds.push(`${ev} >= $${params.push(new Date(lower).toISOString())}::timestamptz`);
    if (window.end !== null) conds.push(`${ev} < $${params.push(new Date(window.end).toISOString())}::timestamptz`);
    const order = [ev, ...(this.spec.created_column ? [quoteIdent(this.spec.created_column)] : []), quoteIdent(this.spec.entity_column)];
    const text = `SELECT ${columns.map(quoteIdent).join(", ")} FROM ${this.from()}${conds.length ? ` WHERE ${conds.join(" AND ")}` : ""} ORDER BY ${order.join(", ")}`;
    let rowsDone = from?.kind === "table" ? from.rows : 0;
    try {
      const cursor = sql.unsafe(text, params).values().cursor(chunkRows) as AsyncIterable<unknown[][]>;
      for await (const rows of cursor) {
        signal?.throwIfAborted();
        const last = rows[rows.length - 1]?.[columns.indexOf(this.spec.event_time_column)];
        const lastMs = last instanceof Date ? last.getTime() : null;
        const first = rowsDone + 1;
        rowsDone += rows.length;
        // everything before the last row's event time is stored once this chunk is; rows at that
        // very time may continue in the next chunk, so a resume starts there (re-sends are no-ops)
        yield { rows, part: this.label(), firstRow: first, done: rowsDone, position: { kind: "table", after: lastMs ?? after, rows: rowsDone } };
      }
    } catch (e) {
      if (signal?.aborted) throw e;
      throw this.fail(e);
    } finally {
      await sql.end({ timeout: 1 }).catch(() => {});
    }
  }
}
