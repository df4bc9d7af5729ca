import { CliError, config, parseFlags, type Command } from "./common.ts";

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
    const { parseTenants, runWorker } = await import("../stream/run.ts");
    if (parseTenants(cfg.KAFKA_TENANTS).size === 0) throw new CliError("configuration error: KAFKA_TENANTS is required for the worker (comma-separated tenants)", 2);
    if (cfg.KAFKA_SASL_MECHANISM && (!cfg.KAFKA_SASL_USERNAME || !cfg.KAFKA_SASL_PASSWORD)) {
      throw new CliError(`configuration error: KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are required with KAFKA_SASL_MECHANISM=${cfg.KAFKA_SASL_MECHANISM}`, 2);
    }
    return runWorker(cfg);
  },
};
