/**
 * Feature value types: parsing a `dtype`, validating a JSON value against it, the stored form
 * (packed with msgpackr, identical in every backend) and the JSON form served back.
 *
 * Stored forms: bool -> boolean; int32 -> number; int64 -> number when |v| <= 2^53-1, else
 * bigint; float32 -> number rounded to float32; float64 -> number; string -> string;
 * bytes -> Uint8Array; timestamp -> epoch milliseconds (number); `T[]` -> array of those,
 * except `float32[]` which is packed as raw little-endian float32 bytes (embeddings stay compact).
 */
import { Packr } from "msgpackr";
import { formatTime, parseTime } from "../lib/time.ts";

export const SCALAR_TYPES = ["bool", "int32", "int64", "float32", "float64", "string", "bytes", "timestamp"] as const;
/** A scalar dtype name. */
export type ScalarType = (typeof SCALAR_TYPES)[number];
/** Every dtype the API accepts: a scalar or its list form `T[]`. */
export const DTYPES = [...SCALAR_TYPES, ...SCALAR_TYPES.map((t) => `${t}[]` as const)] as const;
export type DtypeName = (typeof DTYPES)[number];

/** A parsed dtype. */
export interface Dtype {
  readonly name: DtypeName;
  readonly scalar: ScalarType;
  readonly list: boolean;
}

const DTYPE_TABLE = new Map<string, Dtype>(
  DTYPES.map((name) => {
    const list = name.endsWith("[]");
    return [name, { name, list, scalar: (list ? name.slice(0, -2) : name) as ScalarType }];
  }),
);

/** Parses a dtype name; `null` when it is not one of {@link DTYPES}. */
export function parseDtype(name: string): Dtype | null {
  return DTYPE_TABLE.get(name) ?? null;
}

/** One encoded value is at most this many bytes (1 MiB). */
export const MAX_VALUE_BYTES = 1024 * 1024;

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const INT_STRING = /^[+-]?\d{1,40}$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** A value in stored form (see the module comment). */
export type StoredScalar = boolean | number | bigint | string | Uint8Array;
export type StoredValue = StoredScalar | StoredScalar[] | Float32Array;

/** Result of validating one JSON value. */
export type CoerceResult = { ok: true; value: StoredValue } | { ok: false; message: string };

function fail(message: string): CoerceResult {
  return { ok: false, message };
}

function coerceScalar(t: ScalarType, v: unknown): CoerceResult {
  switch (t) {
    case "bool":
      return typeof v === "boolean" ? { ok: true, value: v } : fail("expected a boolean");
    case "int32":
      if (typeof v !== "number" || !Number.isInteger(v)) return fail("expected an integer (int32)");
      if (v < INT32_MIN || v > INT32_MAX) return fail("integer out of int32 range");
      return { ok: true, value: v === 0 ? 0 : v };
    case "int64":
      if (typeof v === "number") {
        if (!Number.isInteger(v)) return fail("expected an integer (int64)");
        if (!Number.isSafeInteger(v))
          return fail("int64 beyond 2^53-1 must be sent as a decimal string (JSON numbers that large are rounded)");
        return { ok: true, value: v === 0 ? 0 : v };
      }
      if (typeof v === "string" && INT_STRING.test(v)) {
        const b = BigInt(v);
        if (b < INT64_MIN || b > INT64_MAX) return fail("integer out of int64 range");
        return { ok: true, value: b >= -9007199254740991n && b <= 9007199254740991n ? Number(b) : b };
      }
      return fail("expected an integer (int64) as a JSON number or a decimal string");
    case "float32": {
      if (typeof v !== "number" || !Number.isFinite(v)) return fail("expected a finite number (float32)");
      const f = Math.fround(v);
      if (!Number.isFinite(f)) return fail("number out of float32 range");
      return { ok: true, value: f === 0 ? 0 : f };
    }
    case "float64":
      if (typeof v !== "number" || !Number.isFinite(v)) return fail("expected a finite number (float64)");
      return { ok: true, value: v === 0 ? 0 : v };
    case "string":
      if (typeof v !== "string") return fail("expected a string");
      if (!v.isWellFormed()) return fail("string is not valid Unicode (lone surrogate)");
      return { ok: true, value: v };
    case "bytes":
      if (typeof v !== "string" || !BASE64.test(v)) return fail("expected base64 (RFC 4648, with padding)");
      return { ok: true, value: new Uint8Array(Buffer.from(v, "base64")) };
    case "timestamp": {
      if (typeof v !== "string") return fail("expected an RFC 3339 timestamp string");
      const t = parseTime(v);
      return t === null ? fail("expected an RFC 3339 timestamp") : { ok: true, value: t };
    }
  }
}

/**
 * Validates a JSON value against a dtype and returns its stored form, or a message saying
 * what is wrong (used as the `message` of a 400's `errors` entry). `null` is never a value.
 */
export function coerceValue(dtype: Dtype, v: unknown): CoerceResult {
  if (v === null || v === undefined) return fail("null is not a value");
  if (!dtype.list) return coerceScalar(dtype.scalar, v);
  if (!Array.isArray(v)) return fail(`expected an array (${dtype.name})`);
  if (dtype.scalar === "float32") {
    const out = new Float32Array(v.length);
    for (let i = 0; i < v.length; i++) {
      const r = coerceScalar("float32", v[i]);
      if (!r.ok) return fail(`[${i}]: ${r.message}`);
      out[i] = r.value as number;
    }
    return { ok: true, value: out };
  }
  const out: StoredScalar[] = new Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const item: unknown = v[i];
    const r = item === null || item === undefined ? fail("null is not a value") : coerceScalar(dtype.scalar, item);
    if (!r.ok) return fail(`[${i}]: ${r.message}`);
    out[i] = r.value as StoredScalar;
  }
  return { ok: true, value: out };
}

const packr = new Packr({ useRecords: false, int64AsType: "bigint", mapsAsObjects: true });

/** Packs a stored value (msgpack). `float32[]` is packed as its raw float32 bytes. */
export function encodeValue(dtype: Dtype, v: StoredValue): Uint8Array {
  if (dtype.list && dtype.scalar === "float32") {
    const f = v as Float32Array;
    return packr.pack(new Uint8Array(f.buffer, f.byteOffset, f.byteLength));
  }
  return packr.pack(v);
}

/** Unpacks bytes written by {@link encodeValue} for the same dtype. */
export function decodeValue(dtype: Dtype, bytes: Uint8Array): StoredValue {
  const v = packr.unpack(bytes) as StoredValue;
  if (dtype.list && dtype.scalar === "float32") {
    const b = v as Uint8Array;
    const copy = new Uint8Array(b.byteLength);
    copy.set(b);
    return new Float32Array(copy.buffer);
  }
  return v;
}

/** The shortest decimal that rounds to the same float32 (0.1f is served as 0.1). */
export function shortestFloat32(x: number): number {
  if (x === 0 || !Number.isFinite(x)) return x;
  for (let p = 1; p < 10; p++) {
    const c = Number(x.toPrecision(p));
    if (Math.fround(c) === x) return c;
  }
  return x;
}

function scalarToJson(t: ScalarType, v: StoredScalar): unknown {
  switch (t) {
    case "int64":
      if (typeof v !== "bigint") return v;
      return v >= -9007199254740991n && v <= 9007199254740991n ? Number(v) : v.toString();
    case "float32":
      return shortestFloat32(v as number);
    case "bytes":
      return Buffer.from(v as Uint8Array).toString("base64");
    case "timestamp":
      return formatTime(v as number);
    default:
      return v;
  }
}

/** The JSON form of a stored value, as responses carry it. */
export function toJsonValue(dtype: Dtype, v: StoredValue): unknown {
  if (!dtype.list) return scalarToJson(dtype.scalar, v as StoredScalar);
  if (v instanceof Float32Array) return Array.from(v, shortestFloat32);
  const arr = v as StoredScalar[];
  switch (dtype.scalar) {
    case "bool":
    case "int32":
    case "float64":
    case "string":
      return arr;
    default:
      return arr.map((x) => scalarToJson(dtype.scalar, x));
  }
}
