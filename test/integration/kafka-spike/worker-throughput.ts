/**
 * End-to-end throughput of the real worker (`bun src/cli.ts worker`, or the compiled binary in
 * $BIN): N events (2 values each) produced to a 4-partition topic first, then the time until the
 * worker has stored and committed them all. Uses the embedded SQLite store unless POSTGRES_URL /
 * REDIS_URL are set. Numbers are in the README (Stream worker).
 *
 *   bun test/integration/kafka-spike/worker-throughput.ts [N]
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Kafka, logLevel, Partitioners } from "kafkajs";
import { freePort, startKafka, stopAll } from "../../harness/services.ts";

const N = Number(process.argv[2] ?? 100_000);
const ROOT = join(import.meta.dir, "..", "..", "..");
const cmd = process.env["BIN"] ? [process.env["BIN"]] : [process.execPath, join(ROOT, "src", "cli.ts")];
const dir = mkdtempSync(join(tmpdir(), "fs-throughput-"));
const env = { ...process.env, DATA_DIR: dir, LOG_LEVEL: "warn" };

const k = await startKafka({ version: "4" });
try {
  await k.createTopic("tp-ev", 4);
  await k.createTopic("tp-dlq", 1);
  writeFileSync(join(dir, "defs.yaml"), "features:\n  - {name: clicks, version: 1, dtype: int64, entity_type: user}\n  - {name: score, version: 1, dtype: float32, entity_type: user}\n");
  await Bun.spawn({ cmd: [...cmd, "register", join(dir, "defs.yaml"), "--tenant", "t1"], env, stdout: "ignore" }).exited;

  const producer = new Kafka({ brokers: [k.brokers], logLevel: logLevel.NOTHING }).producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  for (let i = 0; i < N; i += 1000) {
    await producer.send({
      topic: "tp-ev",
      acks: -1,
      messages: Array.from({ length: Math.min(1000, N - i) }, (_, j) => {
        const n = i + j;
        return { key: `u${n % 10_000}`, value: JSON.stringify({ tenant: "t1", entity_type: "user", entity_id: `u${n % 10_000}`, event_time: new Date(1_700_000_000_000 + n).toISOString(), features: { clicks: n, score: n / 3 } }) };
      }),
    });
  }
  await producer.disconnect();

  const port = await freePort();
  const t0 = performance.now();
  const worker = Bun.spawn({
    cmd: [...cmd, "worker"],
    env: { ...env, KAFKA_BROKERS: k.brokers, KAFKA_TENANTS: "t1", KAFKA_TOPIC: "tp-ev", KAFKA_DLQ_TOPIC: "tp-dlq", KAFKA_GROUP_ID: "tp", WORKER_METRICS_PORT: String(port), HOST: "127.0.0.1" },
    stdout: "inherit",
    stderr: "ignore",
  });
  const stored = async () => {
    const text = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text(), () => "");
    const m = /feature_store_worker_messages_total\{outcome="stored"\} (\d+)/.exec(text);
    return Number(m?.[1] ?? 0);
  };
  while ((await stored()) < N) await Bun.sleep(50);
  const s = (performance.now() - t0) / 1000;
  const text = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text());
  const pick = (name: string) => Number(new RegExp(`^${name} (\\S+)`, "m").exec(text)?.[1] ?? NaN);
  const batches = pick("feature_store_worker_batch_size_count");
  console.log(`batches ${batches}, mean size ${(pick("feature_store_worker_batch_size_sum") / batches).toFixed(0)}, mean batch time ${((pick("feature_store_worker_batch_duration_seconds_sum") / batches) * 1000).toFixed(1)} ms, busy ${pick("feature_store_worker_batch_duration_seconds_sum").toFixed(2)} s`);
  console.log(`worker stored+committed ${N} events (${N * 2} values) in ${s.toFixed(2)} s = ${Math.round(N / s)} events/s (process start and group join included)`);
  worker.kill("SIGTERM");
  console.log(`worker exit code ${await worker.exited}`);
} finally {
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
}
process.exit(0);
