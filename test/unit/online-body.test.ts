/**
 * The online body's hand-written fast path (src/api/routes/online.ts) against zod, the schema
 * of the OpenAPI document: for every body of a corpus of good and bad ones, the answer with the
 * fast path (value, or the exact 400 and its `errors`) is the answer of zod alone.
 */
import { describe, expect, test } from "bun:test";
import { fastOnlineBody, parseOnlineBody, scanOnlineBody, zodOnlineBody, type OnlineRequest } from "../../src/api/routes/online.ts";
import { AppError } from "../../src/errors.ts";

type Outcome = { ok: OnlineRequest } | { error: { code: string; message: string; errors: unknown } };

function outcome(f: (raw: unknown) => OnlineRequest, raw: unknown): Outcome {
  try {
    return { ok: f(raw) };
  } catch (e) {
    if (!(e instanceof AppError)) throw e;
    return { error: { code: e.code, message: e.message, errors: e.errors } };
  }
}

const names = ["age", "lifetime_value", "embedding@2"];
const VALID: unknown[] = [
  { entity_id: "user_1", feature_names: names },
  { feature_names: ["a"], entity_id: "x" },
  { entity_ids: ["user_1", "user_2", "user_1"], feature_names: names },
  { entity_id: "ü🙂漢字", feature_names: ["a_b9"] },
  { entity_id: "e".repeat(170), feature_names: ["a"] },
  { entity_id: "e".repeat(512), feature_names: ["a"] }, // beyond the fast path, valid for zod
  { entity_ids: Array.from({ length: 1000 }, (_, i) => `u${i}`), feature_names: ["a"] },
  { entity_id: "x", feature_names: Array.from({ length: 1000 }, (_, i) => `f${i}`) },
];
const INVALID: unknown[] = [
  null,
  42,
  "entity_id",
  [],
  [{ entity_id: "x", feature_names: ["a"] }],
  {},
  { entity_id: "x" },
  { feature_names: ["a"] },
  { entity_id: "", feature_names: ["a"] },
  { entity_id: 5, feature_names: ["a"] },
  { entity_id: null, feature_names: ["a"] },
  { entity_id: "a\u0000b", feature_names: ["a"] },
  { entity_id: "\ud800", feature_names: ["a"] },
  { entity_id: "e".repeat(513), feature_names: ["a"] },
  { entity_id: "漢".repeat(171), feature_names: ["a"] },
  { entity_id: "x", feature_names: [] },
  { entity_id: "x", feature_names: "age" },
  { entity_id: "x", feature_names: ["Age"] },
  { entity_id: "x", feature_names: ["age@0"] },
  { entity_id: "x", feature_names: ["age@"] },
  { entity_id: "x", feature_names: [1] },
  { entity_id: "x", feature_names: [null, "a"] },
  { entity_id: "x", feature_names: Array.from({ length: 1001 }, (_, i) => `f${i}`) },
  { entity_id: "x", feature_names: ["a"], extra: 1 },
  { entity_id: "x", entity_ids: ["y"], feature_names: ["a"] },
  { entity_ids: [], feature_names: ["a"] },
  { entity_ids: "x", feature_names: ["a"] },
  { entity_ids: ["x", ""], feature_names: ["a"] },
  { entity_ids: ["x", 3], feature_names: ["a"] },
  { entity_ids: Array.from({ length: 1001 }, (_, i) => `u${i}`), feature_names: ["a"] },
  { entity_ids: ["x"], feature_names: ["a"], timestamp: "2024-01-01T00:00:00Z" },
  { entity_ids: ["x"] },
  { entity_id: "x", feature_names: ["a"], entity_type: "user" },
];

describe("online body: fast path and zod", () => {
  test("the common valid shapes take the fast path, with zod's values", () => {
    for (const raw of VALID.slice(0, 5)) {
      const fast = fastOnlineBody(raw);
      expect(fast).toBeDefined();
      expect(fast).toEqual(zodOnlineBody(raw));
    }
  });

  test("every body of the corpus gets exactly zod's answer: the same values or the same 400 and errors", () => {
    let errors = 0;
    for (const raw of [...VALID, ...INVALID]) {
      const expected = outcome(zodOnlineBody, raw);
      expect(outcome(parseOnlineBody, raw)).toEqual(expected);
      if ("error" in expected) errors++;
    }
    expect(errors).toBe(INVALID.length);
  });

  test("the fast path never accepts a body zod refuses", () => {
    for (const raw of INVALID) expect(fastOnlineBody(raw)).toBeUndefined();
  });
});

describe("online body read from its text (scanOnlineBody)", () => {
  // texts of every body of the corpus in several spellings, and texts JSON.parse refuses or reads
  // differently (escapes, duplicate keys, other whitespace, trailing text)
  const spellings = (raw: unknown): string[] => [JSON.stringify(raw), JSON.stringify(raw, null, 2), JSON.stringify(raw, null, "\t").replace(/\n/g, "\r\n"), ` ${JSON.stringify(raw)}\n`];
  const TEXTS: string[] = [
    ...[...VALID, ...INVALID].flatMap(spellings),
    '{"entity_id":"x","feature_names":["age"]}',
    '{ "entity_id" : "x" , "feature_names" : [ "age" , "lifetime_value" ] }',
    '{"entity_id":"x","feature_names":["age"],"entity_id":"y"}',
    '{"entity_id":"x","entity_id":"y","feature_names":["age"]}',
    '{"entity_id":"x","feature_names":["age"],"feature_names":["lifetime_value"]}',
    '{"entity_id":"x","feature_names":["age"]}}',
    '{"entity_id":"x","feature_names":["age"]]}',
    '{"entity_id":"x","feature_names":["age"]} x',
    '{"entity_id":"x","feature_names":["age"]},',
    '{"entity_id":"x","feature_names":["age",]}',
    '{"entity_id":"x","feature_names":[,"age"]}',
    '{"entity_id":"x","feature_names":["age""age"]}',
    '{"entity_id":"x","feature_names":["age"] ,"x":[1]}',
    '{"entity_id":"x]","feature_names":["age"]}',
    '{"entity_id":"x","feature_names":["a]ge"]}',
    '{"entity_id":"x\\u0041","feature_names":["age"]}',
    '{"entity_id":"x","feature_names":["\\u0061ge"]}',
    '{"entity_id":"x\\"","feature_names":["age"]}',
    '{"entity_id":"x\\\\","feature_names":["age"]}',
    '{"entity_id":"x\u0001","feature_names":["age"]}',
    '{"entity_id":"x\ty","feature_names":["age"]}',
    '{"entity_id":"x","feature_names":["age"]\u00a0}',
    '\u00a0{"entity_id":"x","feature_names":["age"]}',
    '{"entity_id":"x","feature_names":["age"]}\u2028',
    '{"entity_id":"x","feature_names":[]}',
    '{"entity_id":"","feature_names":["age"]}',
    '{"entity_id":"x","feature_names":"age"}',
    '{"entity_id":"x","feature_names":["age"',
    '{"entity_id":"x","feature_names":',
    '{"entity_id":"x"',
    '{"entity_id":5,"feature_names":["age"]}',
    '{"__proto__":"x","feature_names":["age"]}',
    '{"entity_id":"x","feature_names":["__proto__"]}',
    '{"entity_ids":["x"],"feature_names":["age"]}',
    '[{"entity_id":"x","feature_names":["age"]}]',
    "",
    " ",
    "{}",
  ];

  test("is fastOnlineBody(JSON.parse(text)) or nothing, on every text; takes the common spellings", () => {
    let taken = 0;
    for (let pass = 0; pass < 2; pass++) {
      // (the second pass finds the lists of names remembered)
      for (const text of TEXTS) {
        const scanned = scanOnlineBody(text);
        let parsed: unknown;
        let ok = true;
        try {
          parsed = JSON.parse(text);
        } catch {
          ok = false;
        }
        if (scanned === undefined) continue;
        taken++;
        expect(ok).toBe(true);
        expect(scanned).toEqual(fastOnlineBody(parsed) as OnlineRequest);
      }
    }
    // per pass: the 4 spellings of each of the 4 valid one-entity bodies with entity_id first and an
    // id of at most 170 units (VALID 0, 3, 4, 7), and 3 spelt by hand (the two plain ones, the id "x]")
    expect(taken).toBe(2 * (4 * 4 + 3));
  });
});
