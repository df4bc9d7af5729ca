/**
 * CSV entity-dataframe bodies (src/formats/decode.ts): header line, RFC 4180 quoting, empty
 * fields as null, and the 400s naming the row or column. Written when the CSV body parser moved
 * from papaparse to csv-parse (the one the `csv` sources already used); passes on both.
 */
import { describe, expect, test } from "bun:test";
import { AppError } from "../../src/errors.ts";
import { decodeFrame } from "../../src/formats/decode.ts";

const csv = (text: string) => decodeFrame("csv", new TextEncoder().encode(text));

async function problem(text: string): Promise<{ detail: string; path: string | undefined }> {
  try {
    await csv(text);
  } catch (e) {
    if (e instanceof AppError && e.code === "invalid_request") return { detail: e.message, path: e.errors?.[0]?.path };
    throw e;
  }
  throw new Error("decoded without a problem");
}

describe("CSV bodies", () => {
  test("columns of text by header, empty fields null, quoting, BOM, CRLF and blank lines", async () => {
    const f = await csv('\uFEFFid,note,n\r\nu1,"a, ""quoted""\nline",1\r\n\r\nu2,,2.5\r\nu3,5" screen,\r\n');
    expect(f.names).toEqual(["id", "note", "n"]);
    expect(f.rows).toBe(3);
    expect(f.columns).toEqual([
      ["u1", "u2", "u3"],
      ['a, "quoted"\nline', null, '5" screen'],
      ["1", "2.5", null],
    ]);
    expect(f.textual).toBe(true);
    expect(f.types).toEqual([null, null, null]);
  });

  test("a row with another field count names the row (data rows from 0)", async () => {
    expect(await problem("a,b\n1,2\n3\n")).toEqual({ detail: "CSV row 1 has 1 fields; the header has 2", path: "rows[1]" });
    expect(await problem("a,b\n1,2\n3,4\n5,6,7\n")).toEqual({ detail: "CSV row 2 has 3 fields; the header has 2", path: "rows[2]" });
  });

  test("an unterminated quote is malformed CSV, naming the row", async () => {
    const p = await problem('a,b\n1,2\n3,"4\n');
    expect(p.detail).toStartWith("CSV is malformed at data row 1: ");
    expect(p.path).toBe("rows[1]");
  });

  test("header problems and empty bodies", async () => {
    expect((await problem("a,b\n")).detail).toBe("a CSV body needs a header line and at least one row");
    expect((await problem("\n\n")).detail).toBe("a CSV body needs a header line and at least one row");
    expect((await problem("a,,c\n1,2,3\n")).detail).toBe("the CSV header has an empty column name");
    expect((await problem("a,b,a\n1,2,3\n")).detail).toBe('the CSV header names column "a" twice');
    expect((await problem("")).detail).toBe("request body is empty");
  });
});
