/** Contract suite (../shared/API.md), writing values and reading them back: write, online and batch (point in time); on every backend (see ./support.ts). */
import { describe, expect, test } from "bun:test";
import { TestServer } from "../support/backends.ts";
import { B, contractOn, expectProblem, O, R, W } from "./support.ts";

contractOn(({ backend, s, setup }) => {
  describe("values", () => {
    test("every dtype round-trips in its JSON form", async () => {
      const cases: [string, unknown, unknown][] = [
        ["bool", true, true],
        ["int32", -2147483648, -2147483648],
        ["int64", 9007199254740991, 9007199254740991],
        ["int64", "9223372036854775807", "9223372036854775807"],
        ["int64", "-9223372036854775808", "-9223372036854775808"],
        ["int64", "42", 42],
        ["float32", 0.1, 0.1],
        ["float32", 16777217, 16777216],
        ["float64", 0.1, 0.1],
        ["float64", -1.5e300, -1.5e300],
        ["string", "héllo 😀 \u2028", "héllo 😀 \u2028"],
        ["bytes", "AAECAwQ=", "AAECAwQ="],
        ["bytes", "", ""],
        ["timestamp", "2024-01-15T10:00:00.123456+02:00", "2024-01-15T08:00:00.123Z"],
        ["bool[]", [true, false], [true, false]],
        ["int32[]", [], []],
        ["int64[]", ["9223372036854775807", 1], ["9223372036854775807", 1]],
        ["float32[]", [0.1, 0.2, 1e-7], [0.1, 0.2, 1e-7]],
        ["float64[]", [0.1, 2], [0.1, 2]],
        ["string[]", ["a", ""], ["a", ""]],
        ["bytes[]", ["AA==", "AAE="], ["AA==", "AAE="]],
        ["timestamp[]", ["2024-01-01T00:00:00Z"], ["2024-01-01T00:00:00.000Z"]],
      ];
      const defs = cases.map(([dtype], i) => ({ name: `f${i}`, dtype }));
      const { key } = await setup(defs);
      const features = Object.fromEntries(cases.map(([, input], i) => [`f${i}`, input]));
      const w = await s.post(W, { entity_type: "user", records: [{ entity_id: "u", event_time: "2024-01-01T00:00:00Z", features }] }, key);
      expect(w.status).toBe(200);
      expect(w.body).toEqual({ written: cases.length });
      const o = await s.post(O, { entity_id: "u", feature_names: defs.map((d) => d.name) }, key);
      expect(o.status).toBe(200);
      cases.forEach(([dtype, , out], i) => {
        expect([dtype, o.body.features[`f${i}`]]).toEqual([dtype, out]);
        expect(o.body.metadata[`f${i}`]).toEqual({ status: "present", event_time: "2024-01-01T00:00:00.000Z" });
      });
      const b = await s.post(B, { entity_ids: ["u"], feature_names: defs.map((d) => d.name), timestamp: "2024-01-02T00:00:00Z" }, key);
      expect(b.body.results[0].features).toEqual(o.body.features);
    });

    test("invalid values are 400 naming record and feature, and nothing is written", async () => {
      const { key } = await setup([
        { name: "i32", dtype: "int32" },
        { name: "i64", dtype: "int64" },
        { name: "f32", dtype: "float32" },
        { name: "b", dtype: "bytes" },
        { name: "ts", dtype: "timestamp" },
        { name: "s", dtype: "string" },
        { name: "l", dtype: "int32[]" },
        { name: "other", dtype: "int32", entity_type: "item" },
      ]);
      const bad: [string, unknown][] = [
        ["i32", 2147483648],
        ["i32", 1.5],
        ["i32", "1"],
        ["i32", null],
        ["i64", 9007199254740993],
        ["i64", "12a"],
        ["i64", "9223372036854775808"],
        ["f32", 1e39],
        ["f32", "NaN"],
        ["b", "not base64!"],
        ["b", "AAE"],
        ["ts", "2024-13-01T00:00:00Z"],
        ["ts", "yesterday"],
        ["s", 5],
        ["l", [1, null]],
        ["l", 1],
        ["other", 1],
        ["unknown_feature", 1],
      ];
      for (const [f, v] of bad) {
        const r = await s.post(W, { entity_type: "user", records: [{ entity_id: "ok", features: { i32: 1 } }, { entity_id: "u", features: { [f]: v } }] }, key);
        expectProblem(r, 400, "invalid_request");
        expect([f, r.body.errors[0].path]).toEqual([f, `records[1].features.${f}`]);
      }
      const o = await s.post(O, { entity_id: "ok", feature_names: ["i32"] }, key);
      expect(o.body.metadata.i32.status).toBe("not_found");
    });

    test("ordering: newest event time online, older kept for batch, ties to the last written, re-sends not stored twice", async () => {
      const { key } = await setup([{ name: "v", dtype: "int32" }]);
      const write = (t: string, v: number) => s.post(W, { entity_type: "user", records: [{ entity_id: "u", event_time: t, features: { v } }] }, key);
      expect((await write("2024-01-10T00:00:00Z", 10)).body.written).toBe(1);
      expect((await write("2024-01-05T00:00:00Z", 5)).body.written).toBe(1);
      let o = await s.post(O, { entity_id: "u", feature_names: ["v"] }, key);
      expect(o.body.features.v).toBe(10);
      const at = (t: string) => s.post(B, { entity_ids: ["u"], feature_names: ["v"], timestamp: t }, key).then((r) => r.body.results[0]);
      expect((await at("2024-01-06T00:00:00Z")).features.v).toBe(5);
      expect((await at("2024-01-04T23:59:59.999Z")).metadata.v).toEqual({ status: "not_found", event_time: null });
      // same event time: the value written last wins, online and in batch
      await write("2024-01-10T00:00:00Z", 11);
      await write("2024-01-10T00:00:00.000+00:00", 12);
      o = await s.post(O, { entity_id: "u", feature_names: ["v"] }, key);
      expect(o.body.features.v).toBe(12);
      expect((await at("2024-01-10T00:00:00Z")).features.v).toBe(12);
      // re-sending 11 is identical to a stored value: it changes nothing (12 stays current)
      expect((await write("2024-01-10T00:00:00Z", 11)).body.written).toBe(1);
      o = await s.post(O, { entity_id: "u", feature_names: ["v"] }, key);
      expect(o.body.features.v).toBe(12);
      expect((await at("2024-01-11T00:00:00Z")).features.v).toBe(12);
    });

    test("a future value is not visible in batch at earlier times, and millisecond precision holds", async () => {
      const { key } = await setup([{ name: "v", dtype: "int32" }]);
      await s.post(W, { entity_type: "user", records: [
        { entity_id: "u", event_time: "2024-01-01T00:00:00.001Z", features: { v: 1 } },
        { entity_id: "u", event_time: "2024-01-01T00:00:00.002999Z", features: { v: 2 } },
      ] }, key);
      const rows = [
        { entity_id: "u", timestamp: "2024-01-01T00:00:00.000Z" },
        { entity_id: "u", timestamp: "2024-01-01T00:00:00.001Z" },
        { entity_id: "u", timestamp: "2024-01-01T00:00:00.0019Z" },
        { entity_id: "u", timestamp: "2024-01-01T00:00:00.002Z" },
        { entity_id: "u", timestamp: "2024-01-01T01:00:00.002+01:00" },
      ];
      const r = await s.post(B, { rows, feature_names: ["v"] }, key);
      expect(r.status).toBe(200);
      expect(r.body.results.map((x: { features: { v: unknown } }) => x.features.v)).toEqual([null, 1, 1, 2, 2]);
      expect(r.body.results[4].timestamp).toBe("2024-01-01T00:00:00.002Z");
      expect(r.body.results[3].metadata.v.event_time).toBe("2024-01-01T00:00:00.002Z");
    });

    test("an event time more than MAX_FUTURE_SKEW ahead of the server clock is 400 naming the record, nothing written; batch may ask about the future", async () => {
      const { key } = await setup([{ name: "v", dtype: "int32" }]);
      const past = new Date(Date.now() - 3_600_000).toISOString();
      const soon = new Date(Date.now() + 60_000).toISOString();
      const records = [past, past, soon, "9999-12-31T23:59:59Z"].map((t, i) => ({ entity_id: `u${i}`, event_time: t, features: { v: i } }));
      const r = await s.post(W, { entity_type: "user", records }, key);
      expectProblem(r, 400, "invalid_request");
      expect(r.body.errors).toEqual([{ path: "records[3].event_time", message: expect.stringMatching(/^9999-12-31T23:59:59\.000Z is more than MAX_FUTURE_SKEW \(300 s\) ahead of the server clock/) }]);
      const none = await s.post(O, { entity_ids: ["u0", "u2"], feature_names: ["v"] }, key);
      expect(none.body.results.map((x: { metadata: { v: { status: string } } }) => x.metadata.v.status)).toEqual(["not_found", "not_found"]);
      // within the default skew (5 minutes): accepted
      expect((await s.post(W, { entity_type: "user", records: records.slice(0, 3) }, key)).body).toEqual({ written: 3 });
      const far = await s.post(B, { entity_ids: ["u2"], feature_names: ["v"], timestamp: "9999-12-31T23:59:59Z" }, key);
      expect(far.status).toBe(200);
      expect(far.body.results[0].features.v).toBe(2);
      // the limit is a setting
      const lax = await TestServer.open(backend, { MAX_FUTURE_SKEW: "2h" });
      try {
        const k2 = await lax.key(TestServer.tenant());
        expect((await lax.post(R, { name: "v", version: 1, dtype: "int32", entity_type: "user" }, k2)).status).toBe(201);
        const inAnHour = new Date(Date.now() + 3_600_000).toISOString();
        expect((await lax.post(W, { entity_type: "user", records: [{ entity_id: "u", event_time: inAnHour, features: { v: 1 } }] }, k2)).body).toEqual({ written: 1 });
      } finally {
        await lax.close();
      }
    });

    test("ttl: expired online and at a batch timestamp; a missing event_time means now", async () => {
      const { key } = await setup([{ name: "fresh", dtype: "int32", ttl_hours: 1 }, { name: "forever", dtype: "int32" }]);
      const old = new Date(Date.now() - 2 * 3600_000).toISOString();
      await s.post(W, { entity_type: "user", records: [{ entity_id: "u", event_time: old, features: { fresh: 1, forever: 2 } }] }, key);
      const o = await s.post(O, { entity_id: "u", feature_names: ["fresh", "forever"] }, key);
      expect(o.body.features).toEqual({ fresh: null, forever: 2 });
      expect(o.body.metadata.fresh.status).toBe("expired");
      expect(o.body.metadata.fresh.event_time).toBe(new Date(Date.parse(old)).toISOString());
      const at = new Date(Date.parse(old) + 30 * 60_000).toISOString();
      const b = await s.post(B, { entity_ids: ["u"], feature_names: ["fresh"], timestamp: at }, key);
      expect(b.body.results[0].metadata.fresh.status).toBe("present");
      const exactly = new Date(Date.parse(old) + 3600_000).toISOString();
      const e = await s.post(B, { entity_ids: ["u"], feature_names: ["fresh"], timestamp: exactly }, key);
      expect(e.body.results[0].metadata.fresh.status).toBe("expired");
      const before = Date.now();
      await s.post(W, { entity_type: "user", records: [{ entity_id: "u", features: { fresh: 3 } }] }, key);
      const n = await s.post(O, { entity_id: "u", feature_names: ["fresh"] }, key);
      expect(n.body.features.fresh).toBe(3);
      expect(Date.parse(n.body.metadata.fresh.event_time)).toBeGreaterThanOrEqual(before - 1);
    });

    test("online: many entities in request order, references keyed as written, name@N", async () => {
      const { key } = await setup([{ name: "v", dtype: "int32" }]);
      await s.post(R, { name: "v", version: 2, dtype: "string", entity_type: "user" }, key);
      await s.post(W, { entity_type: "user", records: [
        { entity_id: "b", features: { "v@1": 1, v: "two" } },
        { entity_id: "é/é:{x}", features: { "v@1": 7 } },
      ] }, key);
      const r = await s.post(O, { entity_ids: ["é/é:{x}", "missing", "b"], feature_names: ["v@1", "v", "v@2"] }, key);
      expect(r.status).toBe(200);
      expect(r.body.results.map((x: { entity_id: string }) => x.entity_id)).toEqual(["é/é:{x}", "missing", "b"]);
      expect(r.body.results[2].features).toEqual({ "v@1": 1, v: "two", "v@2": "two" });
      expect(r.body.results[0].features).toEqual({ "v@1": 7, v: null, "v@2": null });
      expect(r.body.results[1].metadata["v@1"]).toEqual({ status: "not_found", event_time: null });
    });

    test("unknown features are 404 listing them; mixed entity types and bad references are 400", async () => {
      const { key } = await setup([{ name: "a", dtype: "int32" }, { name: "i", dtype: "int32", entity_type: "item" }]);
      const r = await s.post(O, { entity_id: "u", feature_names: ["a", "nope", "a@9"] }, key);
      expectProblem(r, 404, "not_found");
      expect(r.body.detail).toContain("nope");
      expect(r.body.detail).toContain("a@9");
      expectProblem(await s.post(O, { entity_id: "u", feature_names: ["a", "i"] }, key), 400, "invalid_request");
      expectProblem(await s.post(O, { entity_id: "u", feature_names: ["A b"] }, key), 400, "invalid_request");
      expectProblem(await s.post(B, { entity_ids: ["u"], feature_names: ["nope"], timestamp: "2024-01-01T00:00:00Z" }, key), 404, "not_found");
      expectProblem(await s.post(B, { entity_ids: ["u"], feature_names: ["a", "i"], timestamp: "2024-01-01T00:00:00Z" }, key), 400, "invalid_request");
    });

    test("batch streams NDJSON", async () => {
      const { key } = await setup([{ name: "v", dtype: "int32" }]);
      await s.post(W, { entity_type: "user", records: [{ entity_id: "a", event_time: "2024-01-01T00:00:00Z", features: { v: 1 } }] }, key);
      const r = await s.post(B, { entity_ids: ["a", "b", "a"], feature_names: ["v"], timestamp: "2024-02-01T00:00:00Z" }, key, { accept: "application/x-ndjson" });
      expect(r.status).toBe(200);
      expect(r.headers.get("content-type")).toContain("application/x-ndjson");
      const lines = r.text.trim().split("\n").map((l) => JSON.parse(l));
      expect(lines.map((l) => [l.entity_id, l.features.v])).toEqual([["a", 1], ["b", null], ["a", 1]]);
    });
  });
});
