/**
 * The Grafana dashboard and the alert rules query only metrics the binary exports.
 *
 * - Server metrics: read from the live /metrics of a running `dist/feature-store serve`.
 * - Worker metrics: read from the worker's metrics module (src/stream/metrics.ts: WorkerMetrics
 *   registered on a fresh prom-client Registry, exactly as the worker registers them), AND from
 *   the live /metrics of a running `dist/feature-store worker` consuming from a real Kafka
 *   (started by the test harness), which also answers the worker's probe path and drains on
 *   SIGTERM within the grace period the manifests give it.
 *
 * A histogram family `x` provides the series x_bucket, x_sum and x_count (not `x` itself), so
 * querying a histogram as if it were a gauge fails here too.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { Registry } from "prom-client";
import { loadConfig } from "../../src/config.ts";
import { freePort, type KafkaService, startKafka } from "../harness/services.ts";
import { BIN, CI, dashboardQueries, DEPLOY, type Json, k8sObjects, type LiveServer, loadYaml, metricFamilies, named, podSpec, promqlMetricNames, ROOT, seriesNames, startServer, waitFor } from "./support.ts";

/** Metrics Prometheus itself adds to every target. */
const PROMETHEUS_SERIES = new Set(["up", "scrape_duration_seconds", "scrape_samples_scraped"]);
/** The minimum API.md promises (Operations), as family name → type. */
const CONTRACT_SERVER = {
  feature_store_http_requests_total: "counter",
  feature_store_http_request_duration_seconds: "histogram",
  feature_store_lookups_total: "counter",
  feature_store_cache_requests_total: "counter",
  feature_store_served_value_age_seconds: "histogram",
  feature_store_store_up: "gauge",
};
const CONTRACT_WORKER = ["feature_store_worker_messages_total", "feature_store_worker_batch_duration_seconds", "feature_store_worker_consumer_lag", "feature_store_worker_freshness_seconds"];

const WORKER_MODULE = join(ROOT, "src/metrics.ts");

const dashboard = JSON.parse(readFileSync(join(DEPLOY, "grafana/dashboards/feature-store.json"), "utf8")) as Json;
const alerts = ((loadYaml(join(DEPLOY, "prometheus/alerts.yml"))[0] as Json).groups as Json[]).flatMap((g) => g.rules as Json[]);
const queries = [...dashboardQueries(dashboard).map((q) => ({ where: `dashboard ${q.where}`, expr: q.expr })), ...alerts.map((r) => ({ where: `alert ${r.alert}`, expr: r.expr as string }))];

/** Families of the worker's metrics module, or why they could not be read. */
async function workerFamilies(): Promise<Map<string, string> | string> {
  if (!existsSync(WORKER_MODULE)) return `${WORKER_MODULE} does not exist`;
  const mod = (await import(WORKER_MODULE)) as Record<string, unknown>;
  const Ctor = mod.WorkerMetrics as (new (r: Registry) => unknown) | undefined;
  if (typeof Ctor !== "function") return `${WORKER_MODULE} exports no WorkerMetrics class`;
  const registry = new Registry();
  new Ctor(registry);
  return new Map((await registry.getMetricsAsJSON()).map((m) => [m.name, String(m.type)]));
}

let live: LiveServer | undefined;
let server = new Map<string, string>();
const worker = await workerFamilies();

beforeAll(async () => {
  if (!existsSync(BIN)) return;
  live = await startServer();
  server = metricFamilies(await (await fetch(`${live.base}/metrics`)).text());
}, 30_000);
afterAll(async () => {
  await live?.stop();
});

describe("metric names: the dashboard and the alert rules against what the binary exports", () => {
  test("the queries were found and every one names at least one metric", () => {
    expect(queries.length).toBeGreaterThan(20);
    for (const q of queries) expect(promqlMetricNames(q.expr).length, `${q.where}: ${q.expr}`).toBeGreaterThan(0);
  });

  test("the metric-name lexer reads PromQL as expected", () => {
    expect(promqlMetricNames('histogram_quantile(0.99, sum by (le, route) (rate(a_bucket{route=~"x|y", le!="1"}[5m]))) > 0.015')).toEqual(["a_bucket"]);
    expect(promqlMetricNames("sum(rate(b_total[$__rate_interval])) / sum without (x) (rate(c_total[1m] offset 5m)) and on () d == 0")).toEqual(["b_total", "c_total", "d"]);
    expect(promqlMetricNames("up{job=~\"feature-store.*\"} == 0 unless bool e")).toEqual(["up", "e"]);
  });

  test("a live `dist/feature-store serve` exports the server metrics of the contract", () => {
    if (!existsSync(BIN)) {
      if (CI) throw new Error(`${BIN} is missing`);
      return;
    }
    for (const [name, type] of Object.entries(CONTRACT_SERVER)) expect(server.get(name), name).toBe(type);
  });

  test("the worker's metrics module defines the worker metrics of the contract", () => {
    if (typeof worker === "string") {
      if (CI) throw new Error(worker);
      console.warn(`[deploy tests] ${worker}`);
      return;
    }
    for (const name of CONTRACT_WORKER) expect(worker.has(name), name).toBe(true);
    for (const name of worker.keys()) expect(name.startsWith("feature_store_worker_"), name).toBe(true);
  });

  test("every metric in the dashboard and the alert rules is exported (series names: histograms as _bucket/_sum/_count)", () => {
    if (!existsSync(BIN) || typeof worker === "string") {
      if (CI) throw new Error(`${BIN} or ${WORKER_MODULE} is missing`);
      return;
    }
    const known = seriesNames(new Map([...server, ...worker]));
    const unknown: string[] = [];
    for (const q of queries) {
      for (const name of promqlMetricNames(q.expr)) if (!known.has(name) && !PROMETHEUS_SERIES.has(name)) unknown.push(`${q.where}: ${name}`);
    }
    expect(unknown).toEqual([]);
  });

  test("every worker metric is on the dashboard, and every contract server metric too", () => {
    if (typeof worker === "string") {
      if (CI) throw new Error(worker);
      return;
    }
    const used = new Set(dashboardQueries(dashboard).flatMap((q) => promqlMetricNames(q.expr)));
    const families = new Map<string, string>([...worker, ...Object.entries(CONTRACT_SERVER)]);
    const missing = [...families].filter(([f, type]) => ![...seriesNames(new Map([[f, type]]))].some((s) => used.has(s))).map(([f]) => f);
    expect(missing).toEqual([]);
  });
});

describe("a live `dist/feature-store worker` against a real Kafka", () => {
  let kafka: KafkaService | undefined;
  let proc: Subprocess<"ignore", "pipe", "pipe"> | undefined;
  let dir: string | undefined;
  let base = "";
  let log = "";
  const objects = k8sObjects();
  const deployment = named(objects, "Deployment", "feature-store-worker");
  const container = podSpec(deployment).containers[0];
  const configMap = named(objects, "ConfigMap", "feature-store").data as Record<string, string>;
  /** The manifests' settings (SHUTDOWN_TIMEOUT, KAFKA_TOPIC, ...), with this test's brokers and ports. */
  const cfg = loadConfig(configMap);
  const shutdownTimeout = 5;

  beforeAll(async () => {
    if (!existsSync(BIN)) return;
    kafka = await startKafka();
    for (const [topic, partitions] of [[cfg.KAFKA_TOPIC, 2], [cfg.KAFKA_DLQ_TOPIC, 1]] as const) {
      // the harness's metadata poll can see UNKNOWN_TOPIC_OR_PARTITION (retriable) just after creation
      for (let attempt = 1; ; attempt++) {
        try {
          await (kafka as KafkaService).createTopic(topic, partitions);
          break;
        } catch (e) {
          if (attempt >= 5 || !(e as { retriable?: boolean }).retriable) throw e;
          await Bun.sleep(500);
        }
      }
    }
    dir = mkdtempSync(join(tmpdir(), "fs-worker-"));
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    proc = Bun.spawn([BIN, ...container.args], {
      env: {
        PATH: process.env.PATH ?? "",
        DATA_DIR: dir,
        HOST: "127.0.0.1",
        LOG_LEVEL: "warn",
        KAFKA_BROKERS: kafka.brokers,
        KAFKA_TENANTS: cfg.KAFKA_TENANTS ?? "default",
        KAFKA_TOPIC: cfg.KAFKA_TOPIC,
        KAFKA_DLQ_TOPIC: cfg.KAFKA_DLQ_TOPIC,
        KAFKA_GROUP_ID: cfg.KAFKA_GROUP_ID,
        WORKER_METRICS_PORT: String(port),
        SHUTDOWN_TIMEOUT: String(shutdownTimeout),
      },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    const collect = async (st: ReadableStream<Uint8Array>) => {
      for await (const c of st) log += new TextDecoder().decode(c);
    };
    void collect(proc.stdout);
    void collect(proc.stderr);
    try {
      await waitFor(`${base}/healthz`, 200, 60_000);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n--- worker output ---\n${log}`);
    }
  }, 300_000);

  afterAll(async () => {
    proc?.kill("SIGKILL");
    await kafka?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  const needBinary = () => {
    if (existsSync(BIN)) return true;
    if (CI) throw new Error(`${BIN} is missing`);
    return false;
  };

  test("the worker answers its Deployment's probe paths on WORKER_METRICS_PORT", async () => {
    if (!needBinary()) return;
    for (const p of [container.startupProbe, container.livenessProbe, container.readinessProbe].filter(Boolean)) {
      expect((await fetch(`${base}${p.httpGet.path}`)).status, p.httpGet.path).toBe(200);
    }
  });

  test("its live /metrics has every worker metric of the module, and every metric the queries use is exported", async () => {
    if (!needBinary()) return;
    const text = await (await fetch(`${base}/metrics`)).text();
    const live = metricFamilies(text);
    if (worker instanceof Map) for (const [name, type] of worker) expect(live.get(name), name).toBe(type);
    for (const name of CONTRACT_WORKER) expect(live.has(name), name).toBe(true);
    const known = seriesNames(new Map([...server, ...live]));
    const unknown = queries.flatMap((q) => promqlMetricNames(q.expr).filter((n) => !known.has(n) && !PROMETHEUS_SERIES.has(n)).map((n) => `${q.where}: ${n}`));
    expect(unknown).toEqual([]);
  });

  test("it consumes: a message for a tenant not in KAFKA_TENANTS is counted as dlq on /metrics", async () => {
    if (!needBinary()) return;
    const { Kafka, logLevel } = await import("kafkajs");
    const producer = new Kafka({ clientId: "deploy-test", brokers: [(kafka as KafkaService).brokers], logLevel: logLevel.NOTHING }).producer();
    await producer.connect();
    try {
      await producer.send({ topic: cfg.KAFKA_TOPIC, messages: [{ key: "k", value: JSON.stringify({ tenant: "not-a-listed-tenant", entity_type: "user", entity_id: "u1", features: { user_age: 1 } }) }] });
    } finally {
      await producer.disconnect();
    }
    const deadline = Date.now() + 30_000;
    let dlq = 0;
    while (Date.now() < deadline) {
      const text = await (await fetch(`${base}/metrics`)).text();
      dlq = Number(/^feature_store_worker_messages_total\{outcome="dlq"\} (\d+)/m.exec(text)?.[1] ?? 0);
      if (dlq >= 1) break;
      await Bun.sleep(200);
    }
    expect(dlq, log.split("\n").slice(-10).join("\n")).toBe(1);
  }, 60_000);

  test("SIGTERM while consuming: exits 0 within SHUTDOWN_TIMEOUT + 3 s; the manifests' grace periods exceed the worker's SHUTDOWN_TIMEOUT", async () => {
    if (!needBinary()) return;
    expect(podSpec(deployment).terminationGracePeriodSeconds).toBeGreaterThan(cfg.SHUTDOWN_TIMEOUT + 2);
    const p = proc as Subprocess;
    const started = Date.now();
    p.kill("SIGTERM");
    const code = await Promise.race([p.exited, Bun.sleep((shutdownTimeout + 3) * 1000).then(() => "timeout")]);
    expect(code, log.split("\n").slice(-10).join("\n")).toBe(0);
    expect(Date.now() - started).toBeLessThan((shutdownTimeout + 3) * 1000);
    proc = undefined;
  }, 30_000);
});
