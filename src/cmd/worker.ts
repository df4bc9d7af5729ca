/**
 * `feature-store worker`: the command, and `runWorker`, which builds the dependencies, the
 * Kafka source and dead-letter sink, the /metrics and /healthz endpoint, and runs the {@link StreamWorker} until SIGTERM/SIGINT
 * (graceful: the batch in hand is stored and committed, the group is left, exit 0) or until the
 * consumer fails for good (exit 1, for the supervisor to restart it).
 */
import type { Config } from "../config.ts";
import { Lifecycle } from "../lib/lifecycle.ts";
import { createLogger } from "../log.ts";
import pkg from "../../package.json" with { type: "json" };
import { RegistryRefresher } from "../stream/registry-refresher.ts";
import { createKafka, KafkaJsDeadLetterSink, KafkaJsSource } from "../stream/kafkajs.ts";
import { WorkerMetrics } from "../metrics.ts";
import { StreamWorker } from "../stream/worker.ts";
import { buildDeps, CliError, config, parseFlags, type Command } from "./common.ts";

/** How often the store health gauges are refreshed, ms. */
const HEALTH_INTERVAL_MS = 5_000;

export const command: Command = {
  summary: "run the Kafka stream worker",
  help: `Usage: feature-store worker

Consumes KAFKA_TOPIC (default feature-events) in consumer group KAFKA_GROUP_ID (default
feature-store) from KAFKA_BROKERS, validates each event like the write route, stores it in the
database and the online cache, and sends invalid ones to KAFKA_DLQ_TOPIC (default
feature-events-dlq) with headers error-code and error-detail. Offsets are committed only after
the values are stored. Requires KAFKA_BROKERS and KAFKA_TENANTS (comma-separated tenants whose
events are accepted).

Batches: WORKER_BATCH_SIZE messages (default 1000) or WORKER_BATCH_WAIT_MS (default 50).
Broker security: KAFKA_SSL=true, KAFKA_SASL_MECHANISM=plain|scram-sha-256|scram-sha-512 with
KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE).
Metrics: http://HOST:WORKER_METRICS_PORT/metrics (default 9464), /healthz.
On SIGTERM/SIGINT the batch in hand is stored and committed, the group is left, exit 0.`,
  async run(argv) {
    parseFlags(argv, {});
    const cfg = config();
    if (!cfg.KAFKA_BROKERS) throw new CliError("configuration error: KAFKA_BROKERS is required for the worker", 2);
    if (parseTenants(cfg.KAFKA_TENANTS).size === 0) throw new CliError("configuration error: KAFKA_TENANTS is required for the worker (comma-separated tenants)", 2);
    if (cfg.KAFKA_SASL_MECHANISM && (!cfg.KAFKA_SASL_USERNAME || !cfg.KAFKA_SASL_PASSWORD)) {
      throw new CliError(`configuration error: KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are required with KAFKA_SASL_MECHANISM=${cfg.KAFKA_SASL_MECHANISM}`, 2);
    }
    return runWorker(cfg);
  },
};

/** The tenants named in KAFKA_TENANTS. */
export function parseTenants(list: string | undefined): Set<string> {
  return new Set((list ?? "").split(",").map((t) => t.trim()).filter((t) => t !== ""));
}

/** Runs the stream worker until a signal (returns 0) or a fatal consumer error (returns 1). */
export async function runWorker(cfg: Config): Promise<number> {
  const log = createLogger(cfg.LOG_LEVEL, 1);
  const startedAt = Date.now();
  const deps = await buildDeps(cfg, { log, defaultMetrics: true });
  const lifecycle = new Lifecycle();
  lifecycle.add("stores", () => deps.stores.close());

  const registry = new RegistryRefresher(deps);
  await registry.reload();
  deps.stores.registry.watch((changes) => {
    // a change naming its tenants reloads only those (the snapshot's age stays that of the last full reload)
    if (changes.definitions) (changes.tenants ? deps.registry.reloadFor(changes.tenants) : registry.reload()).then(() => log.info("registry reloaded"), (err: unknown) => log.warn({ err }, "registry reload failed"));
  });

  const metrics = new WorkerMetrics(deps.metrics.registry);
  const checkStores = () => {
    deps.stores.registry.ping().then(
      () => deps.metrics.storeUp.set({ store: "database" }, 1),
      () => deps.metrics.storeUp.set({ store: "database" }, 0),
    );
    deps.stores.online.ping().then(
      () => deps.metrics.storeUp.set({ store: "cache" }, 1),
      () => deps.metrics.storeUp.set({ store: "cache" }, 0),
    );
  };
  checkStores();
  const health = setInterval(checkStores, HEALTH_INTERVAL_MS);
  health.unref();
  lifecycle.add("health checks", () => clearInterval(health));

  const server = Bun.serve({
    port: cfg.WORKER_METRICS_PORT,
    hostname: cfg.HOST,
    development: false,
    fetch: async (req) => {
      const { pathname } = new URL(req.url);
      if (pathname === "/metrics") return new Response(await deps.metrics.registry.metrics(), { headers: { "content-type": deps.metrics.registry.contentType } });
      if (pathname === "/healthz") return Response.json({ status: "ok" });
      return new Response("not found\n", { status: 404 });
    },
  });
  lifecycle.add("metrics server", () => server.stop(true));

  const tenants = parseTenants(cfg.KAFKA_TENANTS);
  const kafka = createKafka(cfg, log);
  const worker = new StreamWorker({
    source: new KafkaJsSource(kafka, {
      topic: cfg.KAFKA_TOPIC,
      groupId: cfg.KAFKA_GROUP_ID,
      dlqTopic: cfg.KAFKA_DLQ_TOPIC,
      sessionTimeoutMs: cfg.KAFKA_SESSION_TIMEOUT_MS,
      fetchMaxWaitMs: Math.max(cfg.WORKER_BATCH_WAIT_MS, 100),
      log,
    }),
    dlq: new KafkaJsDeadLetterSink(kafka, cfg.KAFKA_DLQ_TOPIC),
    process: { deps, tenants, refreshRegistry: (since) => registry.refresh(since) },
    metrics,
    log,
    clock: deps.clock,
    batchSize: cfg.WORKER_BATCH_SIZE,
    batchWaitMs: cfg.WORKER_BATCH_WAIT_MS,
    retryLimitMs: cfg.WORKER_RETRY_LIMIT_SECONDS * 1000,
  });
  const deadlineMs = cfg.SHUTDOWN_TIMEOUT * 1000;
  // The group is left after the last commit; keep a little of the deadline for that.
  lifecycle.add("stream worker", () => worker.stop(Math.max(0, deadlineMs - 2_000)));

  let signalled = false;
  const outcome = new Promise<number>((resolve) => {
    lifecycle.onSignal((signal) => {
      signalled = true;
      log.info({ signal }, "stopping: finishing the batch in hand");
      void lifecycle.stop(deadlineMs, (name, err) => log.warn({ err, name }, "cleanup failed")).then(() => {
        log.info("stopped");
        resolve(0);
      });
    });
    void worker.failed.then((err) => {
      log.error({ err }, "the worker failed for good (the Kafka consumer, or a store outage past WORKER_RETRY_LIMIT_SECONDS); exiting");
      void lifecycle.stop(deadlineMs, (name, e) => log.warn({ err: e, name }, "cleanup failed")).then(() => resolve(1));
    });
  });

  // A stopped kafkajs client can leave timers and sockets behind (reconnect attempts after a
  // broker outage); once everything is stored and committed they must not keep the process up.
  void outcome.then((code) => setTimeout(() => process.exit(code), 1_000));

  try {
    await worker.start();
  } catch (err) {
    // A signal during start-up (still joining the group, or waiting for the topic) is a stop.
    if (signalled) return outcome;
    throw err;
  }
  if (signalled) {
    // The stop ran before the consumer had started; stop what start() just started.
    await worker.stop(0).catch((err: unknown) => log.warn({ err }, "stopping the late-started consumer failed"));
    return outcome;
  }
  log.info(
    {
      topic: cfg.KAFKA_TOPIC,
      group: cfg.KAFKA_GROUP_ID,
      dlq: cfg.KAFKA_DLQ_TOPIC,
      tenants: tenants.size,
      database: deps.stores.registry.name,
      cache: deps.stores.online.name,
      metrics: server.url.href,
      version: pkg.version,
      startup_ms: Date.now() - startedAt,
    },
    "feature-store worker consuming",
  );
  return outcome;
}
