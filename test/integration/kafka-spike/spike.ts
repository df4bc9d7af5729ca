/**
 * Client spike for the stream worker: kafkajs vs @platformatic/kafka under Bun, against a real
 * Kafka started by the test harness (or KAFKA_BROKERS). Not part of the product or the test
 * suite; the numbers it printed are in the README (Stream worker).
 *
 *   cd test/integration/kafka-spike && npm install
 *   bun spike.ts bench  --lib kafkajs|platformatic [--kafka 4|3.9] [--n 100000]
 *   bun spike.ts chaos  --lib kafkajs|platformatic [--kafka 4|3.9]
 *   bun spike.ts consume --lib ... --brokers B --topic T --n N   (what the compiled binary runs)
 *
 * Each consumer works like the worker: a consumer group, manual commits only, one commit per
 * fetched batch after the batch is "processed" (here: counted).
 */
import { parseArgs } from "node:util";

interface SpikeClient {
  produce(topic: string, values: string[], partitions: number): Promise<void>;
  /** Consumes in `group` until `done()`; returns when every processed offset is committed. */
  consume(topic: string, group: string, onMessages: (values: string[]) => void, done: () => boolean): Promise<void>;
  close(): Promise<void>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function kafkajsClient(brokers: string): Promise<SpikeClient> {
  const { Kafka, logLevel, Partitioners } = await import("kafkajs");
  const kafka = new Kafka({ clientId: "spike", brokers: [brokers], logLevel: logLevel.NOTHING, retry: { retries: 1000, initialRetryTime: 200, maxRetryTime: 2000 } });
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  let connected = false;
  const closers: (() => Promise<void>)[] = [];
  return {
    async produce(topic, values, partitions) {
      if (!connected) await producer.connect();
      connected = true;
      for (let i = 0; i < values.length; i += 1000) {
        const chunk = values.slice(i, i + 1000);
        await producer.send({ topic, acks: -1, messages: chunk.map((v, j) => ({ value: v, partition: (i + j) % partitions })) });
      }
    },
    async consume(topic, group, onMessages, done) {
      const consumer = kafka.consumer({ groupId: group, sessionTimeout: 10_000, heartbeatInterval: 1_000, maxWaitTimeInMs: 100 });
      closers.push(() => consumer.disconnect());
      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: true });
      let finished!: () => void;
      const finishedP = new Promise<void>((r) => (finished = r));
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        eachBatch: async ({ batch, resolveOffset, heartbeat }) => {
          if (batch.messages.length === 0) return;
          onMessages(batch.messages.map((m) => m.value?.toString() ?? ""));
          const last = batch.messages[batch.messages.length - 1];
          if (!last) return;
          resolveOffset(last.offset);
          await consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: (BigInt(last.offset) + 1n).toString() }]);
          await heartbeat();
          if (done()) finished();
        },
      });
      await finishedP;
    },
    async close() {
      for (const c of closers) await c().catch(() => {});
      if (connected) await producer.disconnect();
    },
  };
}

/** The part of @platformatic/kafka the spike uses (it is installed only in this folder, so no type import). */
interface PlatformaticMessage {
  topic: string;
  partition: number;
  offset: bigint;
  leaderEpoch: number;
  value: string;
}
interface PlatformaticModule {
  Producer: new (o: object) => { send(o: { acks: number; messages: { topic: string; value: string; partition: number }[] }): Promise<unknown>; close(): Promise<void> };
  Consumer: new (o: object) => {
    consume(o: object): Promise<AsyncIterable<PlatformaticMessage> & { pause(): void; resume(): void }>;
    commit(o: { offsets: { topic: string; partition: number; offset: bigint; leaderEpoch: number }[] }): Promise<void>;
    close(force?: boolean): Promise<void>;
  };
  stringSerializers: object;
  stringDeserializers: object;
}
const PLATFORMATIC: string = "@platformatic/kafka";

async function platformaticClient(brokers: string): Promise<SpikeClient> {
  const { Producer, Consumer, stringSerializers, stringDeserializers } = (await import(PLATFORMATIC)) as PlatformaticModule;
  const producer = new Producer({ clientId: "spike", bootstrapBrokers: [brokers], serializers: stringSerializers, retries: 1000, retryDelay: 500 });
  const closers: (() => Promise<void>)[] = [];
  return {
    async produce(topic, values, partitions) {
      for (let i = 0; i < values.length; i += 1000) {
        const chunk = values.slice(i, i + 1000);
        await producer.send({ acks: -1, messages: chunk.map((v, j) => ({ topic, value: v, partition: (i + j) % partitions })) });
      }
    },
    async consume(topic, group, onMessages, done) {
      const consumer = new Consumer({
        groupId: group,
        clientId: "spike",
        bootstrapBrokers: [brokers],
        deserializers: stringDeserializers,
        sessionTimeout: 10_000,
        heartbeatInterval: 1_000,
        retries: 1000,
        retryDelay: 500,
      });
      closers.push(() => consumer.close(true));
      const stream = await consumer.consume({ topics: [topic], mode: "committed", fallbackMode: "earliest", autocommit: false, maxWaitTime: 100 });
      // Batches like the worker: up to 1000 messages or 50 ms, then one commit.
      let pending: { topic: string; partition: number; offset: bigint; leaderEpoch: number; value: string }[] = [];
      let timer: ReturnType<typeof setTimeout> | undefined;
      let flushing = Promise.resolve();
      const flush = () => {
        if (timer) clearTimeout(timer);
        timer = undefined;
        const batch = pending;
        pending = [];
        if (batch.length === 0) return flushing;
        flushing = flushing.then(async () => {
          onMessages(batch.map((m) => m.value));
          const last = new Map<string, { topic: string; partition: number; offset: bigint; leaderEpoch: number }>();
          for (const m of batch) last.set(`${m.topic}:${m.partition}`, { topic: m.topic, partition: m.partition, offset: m.offset + 1n, leaderEpoch: m.leaderEpoch });
          for (;;) {
            try {
              await consumer.commit({ offsets: [...last.values()] });
              break;
            } catch (e) {
              console.error("commit failed, retrying:", (e as Error).message);
              await sleep(500);
            }
          }
        });
        return flushing;
      };
      for await (const m of stream) {
        pending.push({ topic: m.topic, partition: m.partition, offset: m.offset, leaderEpoch: m.leaderEpoch, value: m.value });
        if (pending.length >= 1000) {
          stream.pause();
          await flush();
          stream.resume();
        } else timer ??= setTimeout(() => void flush(), 50);
        if (done() && pending.length === 0) break;
        if (done()) {
          await flush();
          break;
        }
      }
      await flush();
      while (!done()) {
        await flush();
        await sleep(50);
      }
    },
    async close() {
      for (const c of closers) await c().catch(() => {});
      await producer.close();
    },
  };
}

const { values: opts, positionals } = parseArgs({
  args: process.argv.slice(2),
  allowPositionals: true,
  options: {
    lib: { type: "string", default: "kafkajs" },
    kafka: { type: "string", default: "4" },
    n: { type: "string", default: "100000" },
    brokers: { type: "string" },
    topic: { type: "string" },
    partitions: { type: "string", default: "4" },
  },
});
const mode = positionals[0] ?? "bench";
const n = Number(opts.n);
const partitions = Number(opts.partitions);
const makeClient = (b: string) => (opts.lib === "platformatic" ? platformaticClient(b) : kafkajsClient(b));

function payload(i: number): string {
  return JSON.stringify({ tenant: "t1", entity_type: "user", entity_id: `u${i % 5000}`, event_time: new Date(1_700_000_000_000 + i).toISOString(), features: { clicks: i } });
}

async function withBroker<T>(fn: (brokers: string, kafka: import("../../harness/services.ts").KafkaService | undefined) => Promise<T>): Promise<T> {
  if (opts.brokers) return fn(opts.brokers, undefined);
  const { startKafka, stopAll } = await import("../../harness/services.ts");
  const k = await startKafka({ version: opts.kafka ?? "4" });
  try {
    return await fn(k.brokers, k);
  } finally {
    await stopAll();
  }
}

if (mode === "consume") {
  // The compiled-binary check: consume N messages of an existing topic, commit, exit 0.
  const client = await makeClient(opts.brokers ?? "");
  const seen = new Set<string>();
  const t0 = performance.now();
  await client.consume(opts.topic ?? "", `spike-bin-${Date.now()}`, (vs) => vs.forEach((v) => seen.add(v)), () => seen.size >= n);
  console.log(`consumed ${seen.size} in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
  await client.close();
  process.exit(0);
}

await withBroker(async (brokers, kafka) => {
  const client = await makeClient(brokers);
  const topic = opts.topic ?? `spike-${opts.lib}-${Date.now()}`;
  if (kafka) await kafka.createTopic(topic, partitions);
  const values = Array.from({ length: n }, (_, i) => payload(i));
  let t0 = performance.now();
  await client.produce(topic, values, partitions);
  const produceS = (performance.now() - t0) / 1000;
  console.log(`[${opts.lib} kafka=${kafka?.version ?? brokers}] produced ${n} in ${produceS.toFixed(2)} s = ${Math.round(n / produceS)} msg/s`);
  const seen = new Set<string>();
  let total = 0;
  t0 = performance.now();
  const group = `spike-group-${Date.now()}`;
  if (mode === "chaos") {
    if (!kafka) throw new Error("chaos needs a harness broker");
    let killed = false;
    const consuming = client.consume(topic, group, (vs) => {
      total += vs.length;
      vs.forEach((v) => seen.add(v));
    }, () => seen.size >= n);
    while (seen.size < n / 4) await sleep(5);
    console.log(`  at ${seen.size}: killing the broker (SIGKILL)`);
    await kafka.stopServer({ hard: true });
    killed = true;
    await sleep(3000);
    await kafka.startServer();
    console.log(`  broker back after ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const deadline = Date.now() + 120_000;
    while (seen.size < n && Date.now() < deadline) await sleep(100);
    await Promise.race([consuming, sleep(10_000)]);
    console.log(`  chaos: killed=${killed} unique=${seen.size}/${n} delivered=${total} (redelivered ${total - seen.size}) in ${((performance.now() - t0) / 1000).toFixed(1)} s -> ${seen.size === n ? "OK" : "FAILED"}`);
  } else {
    await client.consume(topic, group, (vs) => {
      total += vs.length;
      vs.forEach((v) => seen.add(v));
    }, () => seen.size >= n);
    const s = (performance.now() - t0) / 1000;
    console.log(`  consumed+committed ${seen.size} (delivered ${total}) in ${s.toFixed(2)} s = ${Math.round(n / s)} msg/s (group join included)`);
  }
  await client.close();
});
process.exit(0);
