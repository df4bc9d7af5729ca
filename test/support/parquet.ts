/**
 * Parquet test fixtures: an in-memory Parquet file (hyparquet-writer) with an explicit flat
 * schema, for dataframe bodies posted to the training-data routes.
 */
import { ByteWriter, ParquetWriter } from "hyparquet-writer";

/** A column's Parquet type: UTF8 text, INT64 TIMESTAMP_MILLIS (bigint ms), INT32, INT64 (bigint). */
export type ParquetColumnType = "string" | "timestamp" | "int32" | "int64";

export interface ParquetColumn {
  name: string;
  type: ParquetColumnType;
  data: readonly unknown[];
  /** OPTIONAL (may hold nulls) instead of REQUIRED */
  nullable?: boolean;
}

const PHYSICAL = {
  string: { type: "BYTE_ARRAY", converted_type: "UTF8" },
  timestamp: { type: "INT64", converted_type: "TIMESTAMP_MILLIS" },
  int32: { type: "INT32" },
  int64: { type: "INT64" },
} as const;

/** The bytes of a one-row-group Parquet file holding `columns`, in order. */
export function parquetFile(columns: readonly ParquetColumn[]): Uint8Array {
  const writer = new ByteWriter();
  const pw = new ParquetWriter({
    writer,
    schema: [
      { name: "root", num_children: columns.length },
      ...columns.map((c) => ({ name: c.name, ...PHYSICAL[c.type], repetition_type: c.nullable ? ("OPTIONAL" as const) : ("REQUIRED" as const) })),
    ],
  });
  pw.write({ columnData: columns.map((c) => ({ name: c.name, data: c.data })) as never });
  pw.finish();
  return writer.getBytes();
}
