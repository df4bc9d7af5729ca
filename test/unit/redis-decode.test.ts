/**
 * The Redis cache's stored form read back (format.ts): `decodeCached`'s own reader of the layout
 * `encodeCached` writes answers exactly what msgpackr answers, for every number encoding, and
 * anything else falls through to msgpackr (or is a miss).
 */
import { describe, expect, test } from "bun:test";
import { Packr } from "msgpackr";
import { decodeCached, encodeCached } from "../../src/store/redis/format.ts";

const packr = new Packr({ useRecords: false, moreTypes: false });

/** What msgpackr alone makes of the bytes (the reference). */
function reference(buf: Uint8Array): unknown {
  if (buf.length === 1 && buf[0] === 0xc0) return null;
  let d: unknown;
  try {
    d = packr.unpack(buf);
  } catch {
    return undefined;
  }
  if (!Array.isArray(d) || d.length !== 3) return undefined;
  const [e, s, v] = d as [unknown, unknown, unknown];
  if (typeof e !== "number" || typeof s !== "number" || !(v instanceof Uint8Array)) return undefined;
  return { event_time: e, seq: s, value: new Uint8Array(v) };
}

const plain = (v: unknown): unknown => (v && typeof v === "object" && "value" in v ? { ...(v as object), value: new Uint8Array((v as { value: Uint8Array }).value) } : v);

const numbers = [0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 1.7e12, Date.now(), 2 ** 53 - 1, -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1, -3e9, 0.5, 1e300, Number.NaN, Number.POSITIVE_INFINITY];

describe("decodeCached", () => {
  test("every number encoding of event_time and seq, values of every bin size", () => {
    for (const e of numbers) {
      for (const s of [0, 1, 300, 2 ** 40, -5, 0.25]) {
        for (const len of [0, 1, 255, 256, 70_000]) {
          const value = new Uint8Array(len).map((_, i) => (i * 7 + 3) & 0xff);
          const buf = encodeCached({ event_time: e, seq: s, value });
          const got = decodeCached(buf);
          expect(plain(got)).toEqual(reference(buf) as never);
          expect(got && Object.is(got.event_time, e)).toBe(true);
          expect(got && Object.is(got.seq, s)).toBe(true);
        }
      }
    }
  });

  test("the negative marker is null", () => {
    expect(decodeCached(encodeCached(null))).toBeNull();
  });

  test("other msgpack (float32, uint64, int64, trailing or missing bytes, other shapes) answers as msgpackr does", () => {
    const hex = [
      "93ca3f80000001c40101", // float32 event_time
      "93cf000000000000000101c40101", // uint64: a BigInt, not ours
      "93d3000000000000000101c40101", // int64
      "930101c4020102ff", // a trailing byte
      "930101c40301", // bin shorter than said
      "930101c5", // cut in the length
      "93cc", // cut in a number
      "920101", // two items
      "9301a161c40101", // a string seq
      "930101a3616263", // a string value
      "c3", // true
      "",
    ];
    for (const h of hex) {
      const buf = Buffer.from(h, "hex");
      expect(plain(decodeCached(buf))).toEqual(reference(buf) as never);
    }
  });

  test("a view into a bigger buffer reads only its own bytes", () => {
    const one = encodeCached({ event_time: 1_700_000_000_000, seq: 42, value: new Uint8Array([9, 8, 7]) });
    const big = Buffer.concat([Buffer.from([0x93, 1, 1]), one, Buffer.from([0xc4, 0x01, 0x05])]);
    const got = decodeCached(big.subarray(3, 3 + one.length));
    expect(plain(got)).toEqual({ event_time: 1_700_000_000_000, seq: 42, value: new Uint8Array([9, 8, 7]) });
  });
});
