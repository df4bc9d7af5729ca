/**
 * Validation of written values (serving/write.ts, no I/O): the MAX_FUTURE_SKEW limit on event
 * times, shared by the write route and the stream worker.
 */
import { describe, expect, test } from "bun:test";
import { ConfigError, loadConfig } from "../../src/config.ts";
import { AppError } from "../../src/errors.ts";
import { RegistrySnapshot } from "../../src/registry/snapshot.ts";
import { prepareRows, type WriteRecord } from "../../src/serving/write.ts";
import type { DefinitionRow } from "../../src/store/types.ts";

const NOW = Date.UTC(2026, 5, 1, 12, 0, 0);
const def: DefinitionRow = {
  id: 1, tenant: "t", name: "v", version: 1, dtype: "int32", entity_type: "user", ttl_hours: null,
  description: null, owner: null, tags: {}, created_at: 0, updated_at: 0,
};

function deps(env: Record<string, string> = {}) {
  return { registry: { current: new RegistrySnapshot([def]) }, clock: { now: () => NOW }, config: loadConfig(env) } as never;
}

/** The field errors of a refused batch, or the stored event times of an accepted one. */
function prepare(records: WriteRecord[], env: Record<string, string> = {}, defaultTime = NOW) {
  try {
    return { times: prepareRows(deps(env), "t", "user", records, defaultTime).rows.map((r) => r.event_time) };
  } catch (e) {
    if (!(e instanceof AppError)) throw e;
    return { code: e.code, errors: e.errors };
  }
}

const at = (ms: number) => new Date(ms).toISOString();

describe("MAX_FUTURE_SKEW", () => {
  test("is a duration: default 5 minutes, units ms/s/m/h/d, a plain number is seconds; bad values name the setting", () => {
    expect(loadConfig({}).MAX_FUTURE_SKEW).toBe(300_000);
    expect(loadConfig({ MAX_FUTURE_SKEW: "30s" }).MAX_FUTURE_SKEW).toBe(30_000);
    expect(loadConfig({ MAX_FUTURE_SKEW: "1.5h" }).MAX_FUTURE_SKEW).toBe(5_400_000);
    expect(loadConfig({ MAX_FUTURE_SKEW: "2D" }).MAX_FUTURE_SKEW).toBe(172_800_000);
    expect(loadConfig({ MAX_FUTURE_SKEW: "250ms" }).MAX_FUTURE_SKEW).toBe(250);
    expect(loadConfig({ MAX_FUTURE_SKEW: "90" }).MAX_FUTURE_SKEW).toBe(90_000);
    expect(loadConfig({ MAX_FUTURE_SKEW: "0" }).MAX_FUTURE_SKEW).toBe(0);
    for (const bad of ["-5m", "5 minutes", "m", "1e9", "99999999999999999999d"]) {
      expect(() => loadConfig({ MAX_FUTURE_SKEW: bad })).toThrow(ConfigError);
      expect(() => loadConfig({ MAX_FUTURE_SKEW: bad })).toThrow(/^MAX_FUTURE_SKEW: /);
    }
  });

  test("an event time more than the skew ahead of the clock is refused, naming the record; up to the skew is accepted", () => {
    const ok = prepare([
      { entity_id: "a", event_time: at(NOW - 86_400_000), features: { v: 1 } },
      { entity_id: "a", event_time: at(NOW + 300_000), features: { v: 2 } },
    ]);
    expect(ok).toEqual({ times: [NOW - 86_400_000, NOW + 300_000] });

    const refused = prepare([
      { entity_id: "a", event_time: at(NOW), features: { v: 1 } },
      { entity_id: "a", features: { v: 1 } },
      { entity_id: "a", event_time: at(NOW + 300_000), features: { v: 1 } },
      { entity_id: "a", event_time: "9999-12-31T23:59:59Z", features: { v: 1 } },
      { entity_id: "a", event_time: at(NOW + 300_001), features: { v: "not a number" } },
    ]);
    expect(refused.code).toBe("invalid_request");
    // one error per far-future record, on its event_time (its features are not checked further)
    expect(refused.errors?.map((e) => e.path)).toEqual(["records[3].event_time", "records[4].event_time"]);
    expect(refused.errors?.[0]?.message).toBe(
      "9999-12-31T23:59:59.000Z is more than MAX_FUTURE_SKEW (300 s) ahead of the server clock (2026-06-01T12:00:00.000Z); values cannot be dated in the future",
    );
  });

  test("the limit is configurable; 0 allows nothing after now", () => {
    expect(prepare([{ entity_id: "a", event_time: at(NOW + 3_600_000), features: { v: 1 } }], { MAX_FUTURE_SKEW: "2h" })).toEqual({ times: [NOW + 3_600_000] });
    expect(prepare([{ entity_id: "a", event_time: at(NOW + 1), features: { v: 1 } }], { MAX_FUTURE_SKEW: "0" }).errors?.[0]?.path).toBe("records[0].event_time");
    expect(prepare([{ entity_id: "a", event_time: at(NOW), features: { v: 1 } }], { MAX_FUTURE_SKEW: "0" })).toEqual({ times: [NOW] });
  });

  test("a defaulted event time (a Kafka record timestamp) is held to the same limit", () => {
    const r = prepare([{ entity_id: "a", features: { v: 1 } }], {}, NOW + 3_600_000);
    expect(r.errors?.[0]?.path).toBe("records[0].event_time");
    expect(r.errors?.[0]?.message).toMatch(/^the record timestamp 2026-06-01T13:00:00\.000Z \(used as event_time\) is more than MAX_FUTURE_SKEW/);
  });
});
