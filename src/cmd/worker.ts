import { CliError, config, parseFlags, type Command } from "./common.ts";

export const command: Command = {
  summary: "run the Kafka stream worker",
  help: `Usage: feature-store worker

Consumes KAFKA_TOPIC (default feature-events) in consumer group KAFKA_GROUP_ID (default
feature-store) from KAFKA_BROKERS, validates each event like the write route, stores it in the
database and the online cache, and sends invalid ones to KAFKA_DLQ_TOPIC. Requires KAFKA_BROKERS
and KAFKA_TENANTS.`,
  async run(argv) {
    parseFlags(argv, {});
    const cfg = config();
    if (!cfg.KAFKA_BROKERS) throw new CliError("configuration error: KAFKA_BROKERS is required for the worker", 2);
    if (!cfg.KAFKA_TENANTS) throw new CliError("configuration error: KAFKA_TENANTS is required for the worker", 2);
    const { runWorker } = await import("../stream/run.ts");
    return runWorker(cfg);
  },
};
