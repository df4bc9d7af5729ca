/**
 * Event decoding and validation of the stream worker (no I/O): the same rules as the write
 * route, applied to one Kafka record.
 */
import { describe, expect, test } from "bun:test";
import { loadConfig } from "../../src/config.ts";
import { RegistrySnapshot } from "../../src/registry/snapshot.ts";
import { decodeEvent, prepareEvent } from "../../src/stream/message.ts";
import type { SourceRecord } from "../../src/stream/source.ts";
import type { DefinitionRow } from "../../src/store/types.ts";

const def = (id: number, name: string, dtype: DefinitionRow["dtype"], entity_type: string): DefinitionRow => ({
  id,
  tenant: "acme",
  name,
  version: 1,
  dtype,
  entity_type,
  ttl_hours: null,
  description: null,
  owner: null,
  tags: {},
  created_at: 0,
  updated_at: 0,
});
const TS = Date.UTC(2025, 0, 2, 3, 4, 5, 6);
/** The worker's clock: an hour after the records' timestamp. */
const NOW = TS + 3_600_000;
const deps = {
  registry: { current: new RegistrySnapshot([def(1, "clicks", "int64", "user"), def(2, "amount", "float64", "order")]) },
  clock: { now: () => NOW },
  config: loadConfig({}),
} as const;
const tenants = new Set(["acme"]);

function record(value: string | Uint8Array | null): SourceRecord {
  return { topic: "t", partition: 0, offset: 0n, timestamp: TS, key: null, value: typeof value === "string" ? Buffer.from(value) : value, headers: [] };
}

function check(value: string | Uint8Array | null, recordTimestamp = TS) {
  const d = decodeEvent(record(value), tenants);
  if (!d.ok) return d.rejection;
  const p = prepareEvent(deps as never, d.event, recordTimestamp);
  return p.ok ? { rows: p.rows } : p.rejection;
}

describe("stream event validation", () => {
  test("a valid event becomes rows; a missing event_time is the record timestamp", () => {
    const r = check(JSON.stringify({ tenant: "acme", entity_type: "user", entity_id: "u1", features: { clicks: 3 } }));
    expect("rows" in r && r.rows.map((x) => [x.feature_id, x.entity_id, x.event_time])).toEqual([[1, "u1", TS]]);
    const t = check(JSON.stringify({ tenant: "acme", entity_type: "user", entity_id: "u1", event_time: "2024-01-15T09:58:00.1234+01:00", features: { clicks: 3 } }));
    expect("rows" in t && t.rows[0]?.event_time).toBe(Date.parse("2024-01-15T08:58:00.123Z"));
  });

  test.each([
    ["empty value", null, "invalid_request", /empty/],
    ["not UTF-8", new Uint8Array([0xc3, 0x28]), "invalid_request", /UTF-8/],
    ["not JSON", "{", "invalid_request", /not valid JSON/],
    ["not an object", "42", "invalid_request", /expected object/i],
    ["unknown field", JSON.stringify({ tenant: "acme", entity_type: "user", entity_id: "u", features: {}, x: 1 }), "invalid_request", /unknown field "x"/],
    ["missing entity_id", JSON.stringify({ tenant: "acme", entity_type: "user", features: {} }), "invalid_request", /entity_id/],
    ["bad entity type name", JSON.stringify({ tenant: "acme", entity_type: "User", entity_id: "u", features: {} }), "invalid_request", /entity_type/],
    ["NUL in entity id", JSON.stringify({ tenant: "acme", entity_type: "user", entity_id: "a\u0000b", features: {} }), "invalid_request", /U\+0000/],
    ["bad event_time", JSON.stringify({ tenant: "acme", entity_type: "user", entity_id: "u", event_time: "yesterday", features: { clicks: 1 } }), "invalid_request", /^event_time: /],
    ["unlisted tenant", JSON.stringify({ tenant: "globex", entity_type: "user", entity_id: "u", features: { clicks: 1 } }), "forbidden", /KAFKA_TENANTS/],
    ["unknown feature", JSON.stringify({ tenant: "acme", entity_type: "user", entity_id: "u", features: { nope: 1 } }), "invalid_request", /^features\.nope: unknown feature/],
    ["wrong type", JSON.stringify({ tenant: "acme", entity_type: "user", entity_id: "u", features: { clicks: 1.5 } }), "invalid_request", /^features\.clicks: /],
    ["unsafe integer", JSON.stringify({ tenant: "acme", entity_type: "user", entity_id: "u", features: { clicks: 2 ** 60 } }), "invalid_request", /^features\.clicks: /],
    ["far-future event_time", JSON.stringify({ tenant: "acme", entity_type: "user", entity_id: "u", event_time: "9999-12-31T23:59:59Z", features: { clicks: 1 } }), "invalid_request", /^event_time: 9999-12-31T23:59:59\.000Z is more than MAX_FUTURE_SKEW \(300 s\) ahead of the server clock/],
    ["event_time just past MAX_FUTURE_SKEW", JSON.stringify({ tenant: "acme", entity_type: "user", entity_id: "u", event_time: new Date(NOW + 300_001).toISOString(), features: { clicks: 1 } }), "invalid_request", /^event_time: .*MAX_FUTURE_SKEW/],
    ["other entity type", JSON.stringify({ tenant: "acme", entity_type: "user", entity_id: "u", features: { amount: 1 } }), "invalid_request", /entity type order/],
  ] as const)("%s is dead-lettered", (_name, value, code, detail) => {
    const r = check(value);
    expect("code" in r && r.code).toBe(code);
    expect("detail" in r ? r.detail : "").toMatch(detail);
  });

  test("event times up to MAX_FUTURE_SKEW ahead of the worker's clock are stored; a record timestamp past it is dead-lettered", () => {
    const soon = check(JSON.stringify({ tenant: "acme", entity_type: "user", entity_id: "u", event_time: new Date(NOW + 300_000).toISOString(), features: { clicks: 1 } }));
    expect("rows" in soon && soon.rows[0]?.event_time).toBe(NOW + 300_000);
    const late = check(JSON.stringify({ tenant: "acme", entity_type: "user", entity_id: "u", features: { clicks: 1 } }), NOW + 3_600_000);
    expect("code" in late && late.code).toBe("invalid_request");
    expect("detail" in late ? late.detail : "").toMatch(/^event_time: the record timestamp .* \(used as event_time\) is more than MAX_FUTURE_SKEW/);
  });
});
