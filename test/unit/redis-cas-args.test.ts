import { describe, expect, test } from "bun:test";
import { Packr } from "msgpackr";
import { CasArgs } from "../../src/store/redis/cache.ts";
import { decodeCached, encodeCached } from "../../src/store/redis/format.ts";
import type { CachedValue } from "../../src/store/types.ts";

/** Reads back what CasArgs wrote: per key its ttl and fields (name, stored form). */
function parse(buf: Buffer): { ttl: number; fields: [string, Buffer][] }[] {
  const out: { ttl: number; fields: [string, Buffer][] }[] = [];
  let at = 0;
  while (at < buf.length) {
    const ttl = buf.readUInt32BE(at);
    const n = buf.readUInt32BE(at + 4);
    at += 8;
    const fields: [string, Buffer][] = [];
    for (let j = 0; j < n; j++) {
      const nl = buf.readUInt16BE(at);
      const name = buf.subarray(at + 2, at + 2 + nl).toString("latin1");
      at += 2 + nl;
      const vl = buf.readUInt32BE(at);
      fields.push([name, buf.subarray(at + 4, at + 4 + vl)]);
      at += 4 + vl;
    }
    out.push({ ttl, fields });
  }
  return out;
}

describe("CasArgs (the CAS script's argument)", () => {
  const numbers = [0, 1, 0x1f, 0x20, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 0xffffffff, 0x100000000, 1_704_067_200_000, Number.MAX_SAFE_INTEGER, -1, -0x20, -0x21, -0x80, -0x81, -0x8000, -0x8001, -0x80000000, -0x80000001, -1_704_067_200_000];
  const sizes = [0, 1, 0xff, 0x100, 0xffff, 0x10000, 70_000];

  test("writes each value exactly as encodeCached packs it, and a negative entry as its marker", () => {
    const args = new CasArgs();
    const values: CachedValue[] = [null];
    for (const et of numbers) for (const seq of [0, 5, 300, 2 ** 40]) values.push({ event_time: et, seq, value: new Uint8Array([1, 2, 3]) });
    for (const size of sizes) values.push({ event_time: 1_704_067_200_000, seq: 42, value: new Uint8Array(size).map((_, i) => i % 251) });
    args.key(3600, values.length);
    values.forEach((v, i) => args.field(1000 + i, v));
    args.key(315_360_000, 0);
    const [first, second] = parse(args.take());
    expect(first?.ttl).toBe(3600);
    expect(first?.fields.length).toBe(values.length);
    values.forEach((v, i) => {
      const [name, bytes] = first?.fields[i] as [string, Buffer];
      expect(name).toBe(String(1000 + i));
      expect(Buffer.compare(bytes, encodeCached(v))).toBe(0);
      expect(decodeCached(bytes)).toEqual(v === null ? null : { event_time: v.event_time, seq: v.seq, value: v.value });
    });
    expect(second).toEqual({ ttl: 315_360_000, fields: [] });
  });

  test("encodeCached writes byte for byte what msgpackr packs", () => {
    const packr = new Packr({ useRecords: false, moreTypes: false });
    const more = [...numbers, 0.5, -0.5, 1e300, -(2 ** 53), 2 ** 31, -(2 ** 31), 2 ** 32 - 1, 2 ** 32 + 0.25];
    for (const et of more) {
      for (const seq of more) {
        const v = { event_time: et, seq, value: new Uint8Array([7, 8]) };
        expect(Buffer.compare(encodeCached(v), packr.pack([et, seq, v.value]))).toBe(0);
      }
    }
    for (const size of sizes) {
      const value = new Uint8Array(size).map((_, i) => (i * 7) % 256);
      expect(Buffer.compare(encodeCached({ event_time: 3, seq: 4, value }), packr.pack([3, 4, value]))).toBe(0);
      const buf = Buffer.from(value);
      expect(Buffer.compare(encodeCached({ event_time: 3, seq: 4, value: buf }), packr.pack([3, 4, buf]))).toBe(0);
    }
  });

  test("take() hands out a copy and starts over", () => {
    const args = new CasArgs();
    args.key(1, 1);
    args.field(7, { event_time: 1, seq: 2, value: new Uint8Array([9]) });
    const a = args.take();
    expect(args.size).toBe(0);
    args.key(2, 1);
    args.field(8, null);
    const b = args.take();
    expect(parse(a)).toEqual([{ ttl: 1, fields: [["7", encodeCached({ event_time: 1, seq: 2, value: new Uint8Array([9]) })]] }]);
    expect(parse(b)).toEqual([{ ttl: 2, fields: [["8", Buffer.from([0xc0])]] }]);
  });
});
