/**
 * The per-request series are tallied in plain numbers and added to prom-client's series when the
 * registry is read (src/metrics.ts CounterTally, HistogramTally): the exposition must be exactly
 * what observing each value through prom-client gives.
 */
import { describe, expect, test } from "bun:test";
import { Counter, Histogram, Registry } from "prom-client";
import { Metrics } from "../../src/metrics.ts";

/** The same series as Metrics', observed directly through prom-client. */
function reference() {
  const registry = new Registry();
  const m = new Metrics({ defaults: false });
  const pick = (name: string) => (m.registry.getSingleMetric(name) as unknown as { help: string; upperBounds?: number[] }) ?? { help: "" };
  const requests = new Counter({ name: "feature_store_http_requests_total", help: pick("feature_store_http_requests_total").help, labelNames: ["route", "method", "status"], registers: [registry] });
  const duration = new Histogram({
    name: "feature_store_http_request_duration_seconds",
    help: pick("feature_store_http_request_duration_seconds").help,
    labelNames: ["route", "method"],
    buckets: pick("feature_store_http_request_duration_seconds").upperBounds,
    registers: [registry],
  });
  const lookups = new Counter({ name: "feature_store_lookups_total", help: pick("feature_store_lookups_total").help, labelNames: ["status"], registers: [registry] });
  const cache = new Counter({ name: "feature_store_cache_requests_total", help: pick("feature_store_cache_requests_total").help, labelNames: ["result"], registers: [registry] });
  const age = new Histogram({
    name: "feature_store_served_value_age_seconds",
    help: pick("feature_store_served_value_age_seconds").help,
    labelNames: ["entity_type"],
    buckets: pick("feature_store_served_value_age_seconds").upperBounds,
    registers: [registry],
  });
  for (const status of ["present", "not_found", "expired"]) lookups.inc({ status }, 0);
  for (const result of ["hit", "miss", "error"]) cache.inc({ result }, 0);
  return { registry, requests, duration, lookups, cache, age };
}

const NAMES = ["feature_store_http_requests_total", "feature_store_http_request_duration_seconds", "feature_store_lookups_total", "feature_store_cache_requests_total", "feature_store_served_value_age_seconds"];

async function exposition(registry: Registry): Promise<string> {
  const parts: string[] = [];
  for (const n of NAMES) parts.push(await registry.getSingleMetricAsString(n));
  return parts.join("\n");
}

describe("metric tallies", () => {
  test("counters and histograms read exactly as observed through prom-client, across reads", async () => {
    const ours = new Metrics({ defaults: false });
    const ref = reference();
    const seconds = [0, 0.00005, 0.0001, 0.00011, 0.003, 0.7, 10, 11, 250];
    const ages = [0, 1, 1.5, 60, 86400, 400 * 86400];
    for (let round = 0; round < 3; round++) {
      for (const [i, s] of seconds.entries()) {
        const route = i % 2 ? "/api/v1/features/online" : "/healthz";
        const method = i % 3 ? "POST" : "GET";
        const status = i % 4 ? 200 : 400;
        ours.observeRequest(route, method, status, s);
        ref.requests.labels(route, method, String(status)).inc();
        ref.duration.labels(route, method).observe(s);
      }
      for (const a of ages) {
        ours.servedValueAgeOf(round % 2 ? "user" : "item").observe(a);
        ref.age.labels(round % 2 ? "user" : "item").observe(a);
      }
      ours.countLookups(3, 0, round);
      if (round > 0) ref.lookups.labels("expired").inc(round);
      ref.lookups.labels("present").inc(3);
      ours.countCache("hit", 7);
      ref.cache.labels("hit").inc(7);
      // direct use of the prom-client series (the bulk lane, multi.ts) adds to the same series
      ours.lookups.inc({ status: "not_found" }, 2);
      ref.lookups.inc({ status: "not_found" }, 2);
      expect(await exposition(ours.registry)).toBe(await exposition(ref.registry));
    }
    expect(await ours.registry.metrics()).toContain('feature_store_http_requests_total{route="/api/v1/features/online",method="POST",status="200"} 9');
  });

  test("a value that is not a number is refused, as prom-client refuses it", () => {
    expect(() => new Metrics({ defaults: false }).servedValueAgeOf("user").observe(Number.NaN)).toThrow(TypeError);
  });
});
