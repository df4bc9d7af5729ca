/**
 * Prometheus: deploy/prometheus.yml and deploy/prometheus/alerts.yml pass `promtool check`, and
 * every alert is unit-tested with `promtool test rules` (it fires on the series it is about and
 * stays quiet on healthy ones). promtool comes from Debian's `prometheus` package, installed
 * when missing; the Prometheus service is never started.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { DEPLOY, type Json, loadYaml, promtool, sh, withTools } from "./support.ts";

const CONFIG = join(DEPLOY, "prometheus.yml");
const RULES = join(DEPLOY, "prometheus/alerts.yml");

interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

const groups = (loadYaml(RULES)[0] as Json).groups as { name: string; rules: Rule[] }[];
const rules = groups.flatMap((g) => g.rules);
const rule = (name: string): Rule => {
  const r = rules.find((x) => x.alert === name);
  if (!r) throw new Error(`no alert ${name} in ${RULES}`);
  return r;
};

/** An alert as promtool expects it: labels, and the annotations rendered for those labels. */
function expected(name: string, labels: Record<string, string>, summary: string): Json {
  const r = rule(name);
  const render = (s: string) => s.replace(/\{\{\s*\$labels\.(\w+)\s*\}\}/g, (_, l: string) => labels[l] ?? "");
  const annotations: Record<string, string> = {};
  for (const [k, v] of Object.entries(r.annotations ?? {})) annotations[k] = k === "summary" ? summary : render(v);
  return { exp_labels: { ...r.labels, ...labels }, exp_annotations: annotations };
}

const ONLINE = 'route="/api/v1/features/online",method="POST"';
const API = 'job="feature-store-api",instance="api-1:8000"';

/** Cumulative histogram buckets growing by `perMinute[le]` each minute for `minutes`. */
function buckets(name: string, labels: string, perMinute: Record<string, number>, minutes = 60): { series: string; values: string }[] {
  return Object.entries(perMinute).map(([le, n]) => ({ series: `${name}{${labels},le="${le}"}`, values: `0+${n}x${minutes}` }));
}

/** One unit test per behaviour: [title, input series, eval time, alert, expected alerts]. */
const cases: { name: string; series: { series: string; values: string }[]; at: string; alert: string; exp: Json[] }[] = [
  {
    name: "online p99 at 47.5 ms fires",
    series: buckets("feature_store_http_request_duration_seconds_bucket", ONLINE, { "0.005": 90, "0.025": 90, "0.05": 100, "+Inf": 100 }),
    at: "20m",
    alert: "FeatureStoreOnlineLatencyHigh",
    exp: [expected("FeatureStoreOnlineLatencyHigh", {}, "Online lookups are slow (p99 47.5ms, target 15 ms)")],
  },
  {
    name: "online p99 under 5 ms is quiet",
    series: buckets("feature_store_http_request_duration_seconds_bucket", ONLINE, { "0.005": 100, "0.025": 100, "+Inf": 100 }),
    at: "20m",
    alert: "FeatureStoreOnlineLatencyHigh",
    exp: [],
  },
  {
    name: "a slow write route fires the generic latency alert; a slow batch route does not",
    series: [
      ...buckets("feature_store_http_request_duration_seconds_bucket", 'route="/api/v1/features/write",method="POST"', { "0.5": 0, "1": 100, "+Inf": 100 }),
      ...buckets("feature_store_http_request_duration_seconds_bucket", 'route="/api/v1/features/batch",method="POST"', { "0.5": 0, "10": 100, "+Inf": 100 }),
    ],
    at: "20m",
    alert: "FeatureStoreLatencyHigh",
    exp: [expected("FeatureStoreLatencyHigh", { route: "/api/v1/features/write" }, "/api/v1/features/write is slow (p99 995ms)")],
  },
  {
    name: "5 % of requests answering 503 fires",
    series: [
      { series: `feature_store_http_requests_total{${API},route="/api/v1/features/online",method="POST",status="200"}`, values: "0+950x30" },
      { series: `feature_store_http_requests_total{${API},route="/api/v1/features/online",method="POST",status="503"}`, values: "0+50x30" },
    ],
    at: "15m",
    alert: "FeatureStoreErrorRateHigh",
    exp: [expected("FeatureStoreErrorRateHigh", {}, "5% of requests fail with 5xx")],
  },
  {
    name: "0.5 % of 5xx and many 4xx are quiet",
    series: [
      { series: `feature_store_http_requests_total{${API},route="/api/v1/features/online",method="POST",status="200"}`, values: "0+695x30" },
      { series: `feature_store_http_requests_total{${API},route="/api/v1/features/online",method="POST",status="404"}`, values: "0+300x30" },
      { series: `feature_store_http_requests_total{${API},route="/api/v1/features/online",method="POST",status="500"}`, values: "0+5x30" },
    ],
    at: "15m",
    alert: "FeatureStoreErrorRateHigh",
    exp: [],
  },
  {
    name: "Redis down for 2 minutes fires (degraded)",
    series: [{ series: `feature_store_store_up{${API},store="cache"}`, values: "1 1 1 0 0 0 0 0" }],
    at: "7m",
    alert: "FeatureStoreCacheDown",
    exp: [expected("FeatureStoreCacheDown", { job: "feature-store-api", instance: "api-1:8000", store: "cache" }, "Redis is unreachable from api-1:8000 (serving degraded)")],
  },
  {
    name: "Redis down for 1 minute is quiet",
    series: [{ series: `feature_store_store_up{${API},store="cache"}`, values: "1 1 1 1 1 1 0 0" }],
    at: "7m",
    alert: "FeatureStoreCacheDown",
    exp: [],
  },
  {
    name: "the database down for a minute fires",
    series: [{ series: `feature_store_store_up{${API},store="database"}`, values: "1 0 0 0 0" }],
    at: "4m",
    alert: "FeatureStoreDatabaseDown",
    exp: [expected("FeatureStoreDatabaseDown", { job: "feature-store-api", instance: "api-1:8000", store: "database" }, "PostgreSQL is unreachable from api-1:8000")],
  },
  {
    name: "a 50 % cache hit rate fires after 30 minutes",
    series: [
      { series: `feature_store_cache_requests_total{${API},result="hit"}`, values: "0+3000x90" },
      { series: `feature_store_cache_requests_total{${API},result="miss"}`, values: "0+3000x90" },
      { series: `feature_store_cache_requests_total{${API},result="error"}`, values: "0+0x90" },
    ],
    at: "75m",
    alert: "FeatureStoreCacheHitRateLow",
    exp: [expected("FeatureStoreCacheHitRateLow", {}, "Online cache hit rate is 50% (target 85 %)")],
  },
  {
    name: "a 95 % cache hit rate, or a low one with almost no traffic, is quiet",
    series: [
      { series: `feature_store_cache_requests_total{${API},result="hit"}`, values: "0+5700x90" },
      { series: `feature_store_cache_requests_total{${API},result="miss"}`, values: "0+300x90" },
      { series: `feature_store_cache_requests_total{job="feature-store-api",instance="api-2:8000",result="miss"}`, values: "0+1x90" },
    ],
    at: "75m",
    alert: "FeatureStoreCacheHitRateLow",
    exp: [],
  },
  {
    name: "values served at a median age of 4 days fire",
    series: buckets("feature_store_served_value_age_seconds_bucket", `${API},entity_type="user"`, { "86400": 0, "604800": 100, "+Inf": 100 }, 90),
    at: "75m",
    alert: "FeatureStoreStaleFeatures",
    exp: [expected("FeatureStoreStaleFeatures", { entity_type: "user" }, "Served user features are stale (median age 4d 0h 0m 0s)")],
  },
  {
    name: "values served at a median age of minutes are quiet",
    series: buckets("feature_store_served_value_age_seconds_bucket", `${API},entity_type="user"`, { "300": 100, "86400": 100, "+Inf": 100 }, 90),
    at: "75m",
    alert: "FeatureStoreStaleFeatures",
    exp: [],
  },
  {
    name: "a worker target down fires",
    series: [
      { series: 'up{job="feature-store-worker",instance="worker:9464"}', values: "1 0 0 0 0 0" },
      { series: 'up{job="node",instance="node:9100"}', values: "0 0 0 0 0 0" },
    ],
    at: "5m",
    alert: "FeatureStoreTargetDown",
    exp: [expected("FeatureStoreTargetDown", { job: "feature-store-worker", instance: "worker:9464" }, "feature-store-worker target worker:9464 is down")],
  },
  {
    name: "a lag of 12,000 messages over two partitions fires",
    series: [
      { series: 'feature_store_worker_consumer_lag{job="feature-store-worker",instance="worker:9464",topic="feature-events",partition="0"}', values: "6000x20" },
      { series: 'feature_store_worker_consumer_lag{job="feature-store-worker",instance="worker:9464",topic="feature-events",partition="1"}', values: "6000x20" },
      { series: 'feature_store_worker_messages_total{job="feature-store-worker",instance="worker:9464",outcome="stored"}', values: "0+1000x20" },
    ],
    at: "15m",
    alert: "FeatureStoreWorkerLagHigh",
    exp: [expected("FeatureStoreWorkerLagHigh", { topic: "feature-events" }, "The worker is 12000 messages behind on feature-events")],
  },
  {
    name: "waiting messages and no progress for 10 minutes: stalled",
    series: [
      { series: 'feature_store_worker_consumer_lag{job="feature-store-worker",instance="worker:9464",topic="feature-events",partition="0"}', values: "100x20" },
      { series: 'feature_store_worker_messages_total{job="feature-store-worker",instance="worker:9464",outcome="stored"}', values: "500x20" },
    ],
    at: "17m",
    alert: "FeatureStoreWorkerStalled",
    exp: [expected("FeatureStoreWorkerStalled", { topic: "feature-events" }, "The worker makes no progress on feature-events")],
  },
  {
    name: "waiting messages while the worker progresses: not stalled",
    series: [
      { series: 'feature_store_worker_consumer_lag{job="feature-store-worker",instance="worker:9464",topic="feature-events",partition="0"}', values: "100x20" },
      { series: 'feature_store_worker_messages_total{job="feature-store-worker",instance="worker:9464",outcome="stored"}', values: "0+100x20" },
    ],
    at: "17m",
    alert: "FeatureStoreWorkerStalled",
    exp: [],
  },
  {
    name: "values servable 5 to 15 minutes after their event time fire",
    series: buckets("feature_store_worker_freshness_seconds_bucket", 'job="feature-store-worker",instance="worker:9464"', { "60": 0, "300": 0, "900": 100, "+Inf": 100 }, 40),
    at: "30m",
    alert: "FeatureStoreWorkerFreshnessHigh",
    exp: [expected("FeatureStoreWorkerFreshnessHigh", {}, "Streamed values become servable 14m 0s after their event time (p90)")],
  },
  {
    name: "values servable within a second are quiet",
    series: buckets("feature_store_worker_freshness_seconds_bucket", 'job="feature-store-worker",instance="worker:9464"', { "1": 100, "300": 100, "+Inf": 100 }, 40),
    at: "30m",
    alert: "FeatureStoreWorkerFreshnessHigh",
    exp: [],
  },
  {
    name: "store retries for 15 minutes fire",
    series: [
      { series: 'feature_store_worker_retries_total{job="feature-store-worker",instance="worker:9464",stage="store"}', values: "0+3x40" },
      { series: 'feature_store_worker_retries_total{job="feature-store-worker",instance="worker:9464",stage="commit"}', values: "0+0x40" },
    ],
    at: "30m",
    alert: "FeatureStoreWorkerRetrying",
    exp: [expected("FeatureStoreWorkerRetrying", { stage: "store" }, "The worker keeps retrying its store step")],
  },
  {
    name: "10 % of messages dead-lettered fires",
    series: [
      { series: 'feature_store_worker_messages_total{job="feature-store-worker",instance="worker:9464",outcome="stored"}', values: "0+900x40" },
      { series: 'feature_store_worker_messages_total{job="feature-store-worker",instance="worker:9464",outcome="dlq"}', values: "0+100x40" },
    ],
    at: "30m",
    alert: "FeatureStoreWorkerDeadLetters",
    exp: [expected("FeatureStoreWorkerDeadLetters", {}, "10% of streamed messages go to the dead-letter topic")],
  },
];

withTools({ promtool: await promtool() }, ({ promtool: bin }) => {
  describe("Prometheus configuration and alert rules (promtool)", () => {
    const dir = mkdtempSync(join(tmpdir(), "fs-promtool-"));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    test("promtool check config deploy/prometheus.yml (and the rule files it loads)", () => {
      const r = sh([bin, "check", "config", CONFIG]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout + r.stderr).toContain(`SUCCESS: ${rules.length} rules found`);
    });

    test("promtool check rules deploy/prometheus/alerts.yml", () => {
      const r = sh([bin, "check", "rules", RULES]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout + r.stderr).toContain(`SUCCESS: ${rules.length} rules found`);
    });

    test("the rule check is not a no-op: a broken expression is rejected", () => {
      const bad = join(dir, "bad.yml");
      writeFileSync(bad, stringify({ groups: [{ name: "x", rules: [{ alert: "X", expr: "sum(rate(feature_store_http_requests_total[5m])" }] }] }));
      expect(sh([bin, "check", "rules", bad]).code).not.toBe(0);
    });

    test("every alert has a severity, a summary, a description and a `for`", () => {
      expect(rules.length).toBeGreaterThanOrEqual(8);
      for (const r of rules) {
        expect(["critical", "warning", "info"], r.alert).toContain(r.labels?.severity ?? "(none)");
        expect(r.annotations?.summary, r.alert).toBeTruthy();
        expect(r.annotations?.description, r.alert).toBeTruthy();
        expect(r.for, r.alert).toMatch(/^\d+[smh]$/);
      }
    });

    test(`promtool test rules: ${cases.length} unit tests, every alert covered`, () => {
      const covered = new Set(cases.map((c) => c.alert));
      expect(rules.map((r) => r.alert).filter((a) => !covered.has(a))).toEqual([]);
      const file = join(dir, "alerts.test.yml");
      const spec = {
        rule_files: [RULES],
        evaluation_interval: "1m",
        tests: cases.map((c) => ({
          name: c.name,
          interval: "1m",
          input_series: c.series,
          alert_rule_test: [{ eval_time: c.at, alertname: c.alert, exp_alerts: c.exp }],
        })),
      };
      writeFileSync(file, stringify(spec, { lineWidth: 0 }));
      const r = sh([bin, "test", "rules", file]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toContain("SUCCESS");
    });
  });
});
