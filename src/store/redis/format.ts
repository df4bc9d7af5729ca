/**
 * How the Redis online cache lays out its data.
 *
 * - One hash per tenant + entity type + entity id and cache generation:
 *   `<ns>:{<gen base36>:<tenant>:<entity_type>:<entity_id>}`. Every part inside the braces is
 *   escaped (`%` `:` `{` `}` as `%25` `%3A` `%7B` `%7D`), so distinct identities never share a
 *   key and the whole identity is the cluster hash tag.
 * - One field per feature version: the decimal `feature_id`.
 * - A field's value is MessagePack: `[event_time, seq, value bytes]` for a value, or a single
 *   msgpack `nil` byte for "never written" (a negative entry). The CAS script reads the two
 *   leading numbers of the same bytes itself (Redis's `cmsgpack` predates the bin type).
 * - `<ns>:gen` holds the current cache generation (a decimal integer).
 */
import { Packr } from "msgpackr";
import type { CachedValue, StoredRow } from "../types.ts";

/** Default key namespace. */
export const DEFAULT_NAMESPACE = "fs";

/** The stored form of a negative entry: msgpack `nil`. */
export const NEGATIVE_MARKER: Buffer = Buffer.from([0xc0]);

const packr = new Packr({ useRecords: false, moreTypes: false });

const SPECIAL = /[%:{}]/;
const SPECIAL_ALL = /[%:{}]/g;
const ESCAPES: Record<string, string> = { "%": "%25", ":": "%3A", "{": "%7B", "}": "%7D" };

/** Escapes one key part so it contains no `:`, `{` or `}` (injective: `%` is escaped too). */
export function escapePart(part: string): string {
  return SPECIAL.test(part) ? part.replace(SPECIAL_ALL, (c) => ESCAPES[c] ?? c) : part;
}

/** Throws unless `ns` can prefix keys without breaking the hash tag. */
export function assertNamespace(ns: string): void {
  if (ns === "" || /[{}\s]/.test(ns)) throw new Error(`invalid Redis key namespace ${JSON.stringify(ns)}: must be non-empty, without braces or spaces`);
}

/** Key of the generation counter. */
export function generationKey(ns: string): string {
  return `${ns}:gen`;
}

/**
 * The prefix of every entity key of one tenant and entity type in generation `gen`
 * (append `escapePart(entityId) + "}"`).
 */
export function entityKeyPrefix(ns: string, gen: number, tenant: string, entityType: string): string {
  return `${ns}:{${gen.toString(36)}:${escapePart(tenant)}:${escapePart(entityType)}:`;
}

/** The hash holding one entity's cached values in generation `gen`. */
export function entityKey(ns: string, gen: number, tenant: string, entityType: string, entityId: string): string {
  return `${entityKeyPrefix(ns, gen, tenant, entityType)}${escapePart(entityId)}}`;
}

/** Bytes of the msgpack encoding of a number as msgpackr (useRecords: false) writes it. */
function packedNumberSize(n: number): number {
  if (n >>> 0 === n) return n < 0x80 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 5;
  if (n >> 0 === n) return n >= -0x20 ? 1 : n >= -0x80 ? 2 : n >= -0x8000 ? 3 : 5;
  return 9;
}

/**
 * Writes an unsigned 32-bit `n` as the shortest of three MessagePack forms whose type bytes
 * follow each other (`tag8`: 1 byte after it, `tag8 + 1`: 2, `tag8 + 2`: 4; uint 0xcc, bin
 * lengths 0xc4); returns the position after it.
 */
function writeSized(b: Buffer, at: number, n: number, tag8: number): number {
  if (n < 0x100) {
    b[at] = tag8;
    b[at + 1] = n;
    return at + 2;
  }
  if (n < 0x10000) {
    b[at] = tag8 + 1;
    b.writeUInt16BE(n, at + 1);
    return at + 3;
  }
  b[at] = tag8 + 2;
  b.writeUInt32BE(n, at + 1);
  return at + 5;
}

/** Writes a number as msgpackr (useRecords: false) does; returns the position after it. */
function writePackedNumber(b: Buffer, at: number, n: number): number {
  if (n >>> 0 === n) {
    if (n < 0x80) b[at++] = n;
    else at = writeSized(b, at, n, 0xcc);
  } else if (n >> 0 === n) {
    if (n >= -0x20) b[at++] = 0x100 + n;
    else if (n >= -0x80) {
      b[at++] = 0xd0;
      b[at++] = n + 0x100;
    } else if (n >= -0x8000) {
      b[at++] = 0xd1;
      b.writeInt16BE(n, at);
      at += 2;
    } else {
      b[at++] = 0xd2;
      b.writeInt32BE(n, at);
      at += 4;
    }
  } else {
    b[at++] = 0xcb;
    b.writeDoubleBE(n, at);
    at += 8;
  }
  return at;
}

/** Bytes of a value's stored form, or a negative entry's (see {@link writeCached}). */
export function cachedSize(value: CachedValue): number {
  if (value === null) return NEGATIVE_MARKER.byteLength;
  const len = value.value.byteLength;
  return 1 + packedNumberSize(value.event_time) + packedNumberSize(value.seq) + (len < 0x100 ? 2 : len < 0x10000 ? 3 : 5) + len;
}

/**
 * Writes a value's stored form, `[event_time, seq, value bytes]` in MessagePack (a negative
 * entry: {@link NEGATIVE_MARKER}), into `b` at
 * `at` (room for {@link cachedSize} bytes); returns the position after it. Byte for byte what
 * msgpackr packs (test/unit/redis-cas-args.test.ts), without its per-call setup and the
 * intermediate buffer: a bulk write encodes every value it offers (msgpackr's pack was a sixth
 * of a materialize process's CPU profile).
 */
export function writeCached(b: Buffer, at: number, value: CachedValue): number {
  if (value === null) return at + NEGATIVE_MARKER.copy(b, at);
  b[at++] = 0x93;
  at = writePackedNumber(b, at, value.event_time);
  at = writePackedNumber(b, at, value.seq);
  const len = value.value.byteLength;
  at = writeSized(b, at, len, 0xc4);
  b.set(value.value, at);
  return at + len;
}

/** Packs a cached value (or a negative entry) into its stored form. */
export function encodeCached(value: CachedValue): Buffer {
  if (value === null) return NEGATIVE_MARKER; // shared, no copy
  const out = Buffer.allocUnsafe(cachedSize(value));
  writeCached(out, 0, value);
  return out;
}

/**
 * Unpacks a stored field: `null` for a negative entry, a row, or `undefined` when the bytes
 * are not something this cache wrote (treated as a miss; the next fill overwrites them).
 * The value is a view of `buf` (no copy).
 */
export function decodeCached(buf: Uint8Array): CachedValue | undefined {
  if (buf.length === 1 && buf[0] === 0xc0) return null;
  return decodeFast(buf) ?? decodeSlow(buf);
}

/** Reads one msgpack number at `at` of the encodings `encodeCached` writes; NaN for any other. */
function numberAt(b: Uint8Array, at: number, view: DataView): number {
  const t = b[at] as number;
  if (t <= 0x7f) return t;
  if (t >= 0xe0) return t - 0x100;
  switch (t) {
    case 0xcc:
      return b[at + 1] as number;
    case 0xcd:
      return view.getUint16(at + 1);
    case 0xce:
      return view.getUint32(at + 1);
    case 0xd0:
      return view.getInt8(at + 1);
    case 0xd1:
      return view.getInt16(at + 1);
    case 0xd2:
      return view.getInt32(at + 1);
    case 0xcb:
      return view.getFloat64(at + 1);
    default:
      return Number.NaN;
  }
}
/** Bytes of the msgpack number at `at` (its type byte included), for the types {@link numberAt} reads. */
const numberSize = (t: number): number => (t <= 0x7f || t >= 0xe0 ? 1 : t === 0xcc || t === 0xd0 ? 2 : t === 0xcd || t === 0xd1 ? 3 : t === 0xce || t === 0xd2 ? 5 : 9);

/**
 * The row of `encodeCached`'s own layout (`[number, number, bin]`, the number encodings
 * msgpackr writes for safe integers and doubles), read without msgpackr; `undefined` for
 * anything else (then msgpackr decides). Same result as msgpackr on what it accepts
 * (test/unit/redis-decode.test.ts).
 */
function decodeFast(b: Uint8Array): StoredRow | undefined {
  if (b.length < 5 || b[0] !== 0x93) return undefined;
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let at = 1;
  const n1 = numberSize(b[at] as number);
  if (at + n1 >= b.length) return undefined;
  const eventTime = numberAt(b, at, view);
  at += n1;
  const n2 = numberSize(b[at] as number);
  if (at + n2 + 2 > b.length) return undefined;
  const seq = numberAt(b, at, view);
  at += n2;
  if (Number.isNaN(eventTime) || Number.isNaN(seq)) return undefined;
  const bt = b[at] as number;
  let len: number;
  if (bt === 0xc4) {
    len = b[at + 1] as number;
    at += 2;
  } else if (bt === 0xc5 && at + 3 <= b.length) {
    len = view.getUint16(at + 1);
    at += 3;
  } else if (bt === 0xc6 && at + 5 <= b.length) {
    len = view.getUint32(at + 1);
    at += 5;
  } else return undefined;
  if (at + len !== b.length) return undefined;
  return { event_time: eventTime, seq, value: new Uint8Array(b.buffer, b.byteOffset + at, len) };
}

function decodeSlow(buf: Uint8Array): CachedValue | undefined {
  let decoded: unknown;
  try {
    decoded = packr.unpack(buf);
  } catch {
    return undefined;
  }
  if (!Array.isArray(decoded) || decoded.length !== 3) return undefined;
  const [eventTime, seq, bytes] = decoded as [unknown, unknown, unknown];
  if (typeof eventTime !== "number" || typeof seq !== "number" || !(bytes instanceof Uint8Array)) return undefined;
  // A plain Uint8Array view (msgpackr hands out Buffers), without copying.
  const row: StoredRow = { event_time: eventTime, seq, value: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) };
  return row;
}
