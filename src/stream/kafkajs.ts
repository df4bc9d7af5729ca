/**
 * The kafkajs implementation of {@link EventSource} and {@link DeadLetterSink} (the only file
 * that imports the client; see the README, section Stream worker for why kafkajs).
 *
 * kafkajs notes that shape this file:
 * - `eachBatch` with `autoCommit: false` and `eachBatchAutoResolve: false`: a record's offset
 *   is resolved (the in-memory fetch position moves past it) only once the worker accepted it;
 *   commits are explicit, after the worker stored the records.
 * - kafkajs heartbeats only between fetches or when asked, so a delivery that waits for room
 *   in the worker's batch heartbeats on a timer, and gives up when a heartbeat reports a
 *   rebalance (the error is then rethrown so that kafkajs rejoins the group).
 * - `consumer.commitOffsets` silently does nothing once `disconnect()` has begun, so the
 *   worker commits its last batch before calling {@link KafkaJsSource.stop}.
 */
import { Kafka, logLevel, Partitioners, type Consumer, type IHeaders, type KafkaMessage, type LogEntry, type Producer, type SASLOptions } from "kafkajs";
import type { Config } from "../config.ts";
import type { Logger } from "../log.ts";
import type { DeadLetter, DeadLetterSink, EventSource, PartitionOffset, RecordHeader, SourceHandlers, SourceRecord } from "./source.ts";

/** SASL settings from the configuration, or undefined (validated by the worker command). */
export function saslOptions(cfg: Pick<Config, "KAFKA_SASL_MECHANISM" | "KAFKA_SASL_USERNAME" | "KAFKA_SASL_PASSWORD">): SASLOptions | undefined {
  const mechanism = cfg.KAFKA_SASL_MECHANISM;
  if (mechanism === undefined) return undefined;
  return { mechanism, username: cfg.KAFKA_SASL_USERNAME ?? "", password: cfg.KAFKA_SASL_PASSWORD ?? "" };
}

/** A kafkajs client for the configured brokers, TLS and SASL, logging through `log`. */
export function createKafka(cfg: Config, log: Logger, clientId = "feature-store-worker"): Kafka {
  const kafkaLog = log.child({ component: "kafka" });
  const sasl = saslOptions(cfg);
  return new Kafka({
    clientId,
    brokers: (cfg.KAFKA_BROKERS ?? "")
      .split(",")
      .map((b) => b.trim())
      .filter((b) => b !== ""),
    ssl: cfg.KAFKA_SSL,
    ...(sasl ? { sasl } : {}),
    connectionTimeout: 10_000,
    requestTimeout: 30_000,
    retry: { initialRetryTime: 300, maxRetryTime: 10_000, retries: 8 },
    logLevel: logLevel.WARN,
    // kafkajs errors during a broker outage are expected and retried; the worker logs what matters.
    logCreator:
      () =>
      ({ namespace, level, log: entry }: LogEntry) => {
        const { message, timestamp: _ts, logger: _l, ...extra } = entry;
        const fields = { namespace, ...extra };
        if (level <= logLevel.WARN) kafkaLog.warn(fields, message);
        else kafkaLog.debug(fields, message);
      },
  });
}

function toHeaders(h: IHeaders | undefined): RecordHeader[] {
  const out: RecordHeader[] = [];
  for (const [name, v] of Object.entries(h ?? {})) {
    for (const one of Array.isArray(v) ? v : v === undefined ? [] : [v]) out.push({ name, value: typeof one === "string" ? Buffer.from(one) : one });
  }
  return out;
}

function toRecord(topic: string, partition: number, m: KafkaMessage): SourceRecord {
  return {
    topic,
    partition,
    offset: BigInt(m.offset),
    timestamp: Number(m.timestamp),
    key: m.key,
    value: m.value,
    headers: toHeaders(m.headers),
  };
}

const asBuffer = (b: Uint8Array): Buffer => (Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength));

/** Options of {@link KafkaJsSource}. */
export interface KafkaJsSourceOptions {
  topic: string;
  groupId: string;
  /** consumer group session timeout, ms (a dead member's partitions move after this long) */
  sessionTimeoutMs: number;
  /** longest the broker holds a fetch that has no data, ms */
  fetchMaxWaitMs: number;
  /** the dead-letter topic, checked at start (a missing one is reported, not created) */
  dlqTopic: string;
  log: Logger;
}

/** Consumes one topic in a consumer group with kafkajs; commits only when told to. */
export class KafkaJsSource implements EventSource {
  private consumer: Consumer | undefined;
  private paused = false;
  private stopped = false;
  private readonly heartbeatMs: number;

  constructor(
    private readonly kafka: Kafka,
    private readonly opts: KafkaJsSourceOptions,
  ) {
    this.heartbeatMs = Math.max(500, Math.min(3_000, Math.floor(opts.sessionTimeoutMs / 3)));
  }

  async start(handlers: SourceHandlers): Promise<void> {
    const { log, topic } = this.opts;
    const consumer = this.kafka.consumer({
      groupId: this.opts.groupId,
      sessionTimeout: this.opts.sessionTimeoutMs,
      rebalanceTimeout: Math.max(60_000, this.opts.sessionTimeoutMs),
      heartbeatInterval: this.heartbeatMs,
      maxWaitTimeInMs: this.opts.fetchMaxWaitMs,
      allowAutoTopicCreation: false,
      retry: {
        initialRetryTime: 300,
        maxRetryTime: 10_000,
        retries: 8,
        // kafkajs gave up on a retriable error (e.g. the brokers were down for a while): start over.
        restartOnFailure: async (err) => {
          log.warn({ err }, "kafka consumer failed; restarting it");
          return !this.stopped;
        },
      },
    });
    this.consumer = consumer;
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      const assigned = Object.entries(e.payload.memberAssignment).flatMap(([t, parts]) => parts.map((partition) => ({ topic: t, partition })));
      log.info({ partitions: assigned.map((p) => p.partition), member: e.payload.memberId }, "joined the consumer group");
      handlers.onAssignment(assigned);
    });
    consumer.on(consumer.events.CRASH, (e) => {
      if (!e.payload.restart && !this.stopped) handlers.onFatal(e.payload.error);
    });
    await consumer.connect();
    await this.prepareTopic();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: 1,
      eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
        if (batch.messages.length === 0) return;
        let heartbeatError: unknown;
        const timer = setInterval(() => {
          heartbeat().catch((err: unknown) => {
            heartbeatError ??= err;
          });
        }, this.heartbeatMs);
        const active = () => heartbeatError === undefined && !this.paused && !this.stopped && isRunning() && !isStale();
        try {
          const records = batch.messages.map((m) => toRecord(batch.topic, batch.partition, m));
          const { accepted } = await handlers.onRecords(records, BigInt(batch.highWatermark), active);
          const last = accepted > 0 ? batch.messages[accepted - 1] : undefined;
          if (last) resolveOffset(last.offset);
        } finally {
          clearInterval(timer);
        }
        if (heartbeatError !== undefined) throw heartbeatError;
      },
    });
  }

  /** Waits for the source topic to exist (logging while it does not); reports a missing DLQ topic. */
  private async prepareTopic(): Promise<void> {
    const { log, topic, dlqTopic } = this.opts;
    const admin = this.kafka.admin();
    await admin.connect();
    try {
      for (let warned = false; !this.stopped; ) {
        const topics = await admin.listTopics();
        if (topics.includes(topic)) {
          if (!topics.includes(dlqTopic)) log.error({ topic: dlqTopic }, "the dead-letter topic does not exist: an invalid message will stall its partition until it is created");
          return;
        }
        if (!warned) log.warn({ topic }, "the source topic does not exist yet; waiting for it");
        warned = true;
        await Bun.sleep(2_000);
      }
    } finally {
      await admin.disconnect().catch(() => {});
    }
  }

  async commit(offsets: PartitionOffset[]): Promise<void> {
    if (offsets.length === 0) return;
    if (!this.consumer || this.stopped) throw new Error("the consumer is not running");
    await this.consumer.commitOffsets(offsets.map((o) => ({ topic: o.topic, partition: o.partition, offset: o.offset.toString() })));
  }

  pause(): void {
    if (this.paused || !this.consumer) return;
    this.paused = true;
    try {
      this.consumer.pause([{ topic: this.opts.topic }]);
    } catch {
      // not running yet: nothing to pause
    }
  }

  resume(): void {
    if (!this.paused || !this.consumer) return;
    this.paused = false;
    try {
      this.consumer.resume([{ topic: this.opts.topic }]);
    } catch {
      // not running: nothing to resume
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.consumer?.disconnect();
  }
}

/** Writes dead letters with kafkajs, acknowledged by every in-sync replica. */
export class KafkaJsDeadLetterSink implements DeadLetterSink {
  private readonly producer: Producer;
  private connected: Promise<void> | undefined;

  constructor(
    kafka: Kafka,
    private readonly topic: string,
  ) {
    this.producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: false, retry: { initialRetryTime: 300, maxRetryTime: 5_000, retries: 5 } });
  }

  async send(letters: DeadLetter[]): Promise<void> {
    if (letters.length === 0) return;
    this.connected ??= this.producer.connect().catch((err: unknown) => {
      this.connected = undefined;
      throw err;
    });
    await this.connected;
    await this.producer.send({
      topic: this.topic,
      acks: -1,
      messages: letters.map(({ record, code, detail }) => {
        const headers: IHeaders = {};
        for (const h of record.headers) {
          const prev = headers[h.name];
          headers[h.name] = prev === undefined ? asBuffer(h.value) : [...(Array.isArray(prev) ? prev : [prev]), asBuffer(h.value)];
        }
        Object.assign(headers, {
          "error-code": code,
          "error-detail": detail,
          "original-topic": record.topic,
          "original-partition": String(record.partition),
          "original-offset": record.offset.toString(),
        });
        return {
          key: record.key === null ? null : asBuffer(record.key),
          value: record.value === null ? null : asBuffer(record.value),
          headers,
          timestamp: String(record.timestamp),
        };
      }),
    });
  }

  async close(): Promise<void> {
    if (this.connected) await this.producer.disconnect();
  }
}
