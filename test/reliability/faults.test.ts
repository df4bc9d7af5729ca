/**
 * Faults under load, on the compiled binary with PostgreSQL + Redis + Kafka and the worker:
 * while readers and writers run, Redis is killed and restarted, then PostgreSQL is stopped and
 * restarted, then the Kafka broker, then the worker is SIGKILLed. Measured per fault: failed
 * requests and the time to recover. Asserted: online reads never fail (and never answer a wrong
 * value) while either store is up, including cached reads during a full PostgreSQL outage;
 * writes fail only while PostgreSQL is down; at the end the stored state equals the ground truth
 * (every acknowledged write and every produced event stored, none twice, online = history), and
 * the worker never stored an event of a tenant outside KAFKA_TENANTS (those went to the DLQ).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import postgres from "postgres";
import { freePort, startKafka, startPostgres, startRedis, type KafkaService, type PgService, type RedisService } from "../harness/services.ts";
import { cli, createKey, figure, LoadLoop, post, requireBinary, Server, until, type Outcome } from "./support.ts";

requireBinary();

const O = "/api/v1/features/online";
const W = "/api/v1/features/write";
const B = "/api/v1/features/batch";
const READ_ENTITIES = 200;
const WRITE_ENTITIES = 50;
/** Event times of the writers: BASE + request index (ms), so every write is distinct. */
const BASE = Date.parse("2025-06-01T00:00:00Z");
/** Event times of the Kafka events: KBASE + event number. */
const KBASE = Date.parse("2025-07-01T00:00:00Z");
const TOPIC = "feature-events";
const DLQ = "feature-events-dlq";
/** Every 10th event belongs to a tenant the worker does not accept. */
const intruderEvent = (n: number) => n % 10 === 9;

/** startKafka, again when the harness trips over a cluster id starting with "-" (1 in 64). */
async function startKafkaRetrying(): Promise<KafkaService> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startKafka();
    } catch (e) {
      if (attempt >= 3 || !/storage format failed/.test(String(e))) throw e;
    }
  }
}

/** Produces events at a steady, bounded rate and remembers which ones the broker acknowledged. */
class EventProducer {
  readonly acked = new Set<number>();
  readonly failed = new Set<number>();
  private n = 0;
  private running = true;
  private readonly done: Promise<void>;

  constructor(
    private readonly producer: import("kafkajs").Producer,
    perBatch = 10,
    everyMs = 50,
  ) {
    this.done = (async () => {
      while (this.running && this.n < 200_000) {
        const batch = Array.from({ length: perBatch }, () => this.n++);
        try {
          await this.producer.send({
            topic: TOPIC,
            messages: batch.map((n) => ({
              key: `k_${n % 100}`,
              value: JSON.stringify({ tenant: intruderEvent(n) ? "intruder" : "faults", entity_type: "user", entity_id: `k_${n % 100}`, event_time: new Date(KBASE + n).toISOString(), features: { user_age: n } }),
            })),
          });
          for (const n of batch) this.acked.add(n);
        } catch {
          for (const n of batch) this.failed.add(n);
        }
        await Bun.sleep(everyMs);
      }
    })();
  }

  /** Events produced so far (acknowledged or not). */
  get count(): number {
    return this.n;
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
  }
}

interface Phase {
  name: string;
  from: number;
  to: number;
}

describe("faults under load (PostgreSQL + Redis + Kafka + worker)", () => {
  let pg: PgService;
  let redis: RedisService;
  let kafka: KafkaService;
  let worker: Server;
  let workerEnv: Record<string, string>;
  let events: EventProducer;
  let kafkaClient: import("kafkajs").Kafka;
  let producer: import("kafkajs").Producer;
  let intruderKey: string;
  let env: Record<string, string>;
  let key: string;
  let server: Server;
  let readers: LoadLoop;
  let writers: LoadLoop;
  const wrongValues: string[] = [];
  const phases: Phase[] = [];
  const recovery: Record<string, number> = {};

  const reader = (i: number) => {
    const j = i % READ_ENTITIES;
    return post(server.base, O, { entity_id: `r_${j}`, feature_names: ["user_age"] }, key, 10_000).then(async (res) => {
      if (res.status !== 200) return res;
      const body = (await res.clone().json()) as { features: { user_age: unknown } };
      if (body.features.user_age !== j) wrongValues.push(`r_${j}: ${JSON.stringify(body.features.user_age)}`);
      return res;
    });
  };
  const writer = (i: number) =>
    post(server.base, W, { entity_type: "user", records: [{ entity_id: `w_${i % WRITE_ENTITIES}`, event_time: new Date(BASE + i).toISOString(), features: { user_age: i } }] }, key, 10_000);

  const failures = (loop: LoadLoop, from: number, to: number) => loop.between(from, to).filter((o) => o.status !== 200);
  const describeFailures = (xs: Outcome[]) => xs.slice(0, 5).map((o) => `${o.status} ${o.error ?? ""} at ${Math.round(o.at)}`);

  /** Runs `fault` as a named phase; returns [from, to) in load-loop time. */
  async function phase(name: string, fault: () => Promise<void>): Promise<Phase> {
    const from = readers.now();
    await fault();
    const p = { name, from, to: readers.now() };
    phases.push(p);
    return p;
  }

  async function readyz(): Promise<{ status: string; stores: { database: string; cache: string } } | undefined> {
    try {
      return (await (await fetch(`${server.base}/readyz`)).json()) as { status: string; stores: { database: string; cache: string } };
    } catch {
      return undefined;
    }
  }

  /** Cache counters from /metrics. */
  async function cacheCounters(): Promise<{ hit: number; miss: number; error: number; available: boolean }> {
    const m = await (await fetch(`${server.base}/metrics`)).text();
    const n = (result: string) => Number(new RegExp(`^feature_store_cache_requests_total\\{result="${result}"\\} (\\d+)$`, "m").exec(m)?.[1] ?? -1);
    return { hit: n("hit"), miss: n("miss"), error: n("error"), available: /^feature_store_cache_available 1$/m.test(m) };
  }

  /** Waits until every reader entity is served from Redis: a second of hits only. */
  async function cacheWarm(): Promise<void> {
    await until("the Redis cache to serve every reader entity", async () => {
      const a = await cacheCounters();
      if (!a.available) return false;
      await Bun.sleep(1000);
      const b = await cacheCounters();
      return b.available && b.miss === a.miss && b.error === a.error && b.hit > a.hit;
    }, 60_000, 100);
  }

  /** Stored Kafka events of `tenant`: event number -> number of history rows. */
  async function storedEvents(tenant: string): Promise<Map<number, number>> {
    const sql = postgres(env.POSTGRES_URL as string, { max: 1, onnotice: () => {} });
    try {
      const rows = await sql<{ event_time: string; n: number }[]>`
        SELECT v.event_time::text AS event_time, count(*)::int AS n FROM feature_values v JOIN feature_definitions d ON d.id = v.feature_id
        WHERE d.tenant = ${tenant} AND v.entity_id LIKE 'k\_%' GROUP BY v.entity_id, v.event_time`;
      return new Map(rows.map((r) => [Number(r.event_time) - KBASE, r.n]));
    } finally {
      await sql.end({ timeout: 5 });
    }
  }

  /** Waits until every acknowledged event of the accepted tenant is stored; returns ms waited. */
  async function caughtUp(what: string): Promise<number> {
    const target = [...events.acked].filter((n) => !intruderEvent(n));
    return until(what, async () => {
      const stored = await storedEvents("faults");
      return target.every((n) => stored.has(n));
    }, 120_000, 100);
  }

  async function startWorker(): Promise<Server> {
    const w = Server.spawnWorker(workerEnv);
    await until("the worker's /healthz", async () => (await fetch(`http://127.0.0.1:${workerEnv.WORKER_METRICS_PORT}/healthz`)).ok, 60_000, 100);
    return w;
  }

  beforeAll(async () => {
    [pg, redis, kafka] = await Promise.all([startPostgres(), startRedis(), startKafkaRetrying()]);
    await Promise.all([kafka.createTopic(TOPIC, 3), kafka.createTopic(DLQ, 1)]);
    env = { POSTGRES_URL: await pg.createDatabase(), REDIS_URL: redis.url, LOG_LEVEL: "warn" };
    expect(cli(["migrate"], env).code).toBe(0);
    key = createKey(env, "faults", "admin").key;
    expect(cli(["register", "examples/features.yaml", "--tenant", "faults"], env).code).toBe(0);
    // a tenant the worker must not accept, with the same definitions (so its events would be valid)
    intruderKey = createKey(env, "intruder", "admin").key;
    expect(cli(["register", "examples/features.yaml", "--tenant", "intruder"], env).code).toBe(0);
    workerEnv = { ...env, HOST: "127.0.0.1", KAFKA_BROKERS: kafka.brokers, KAFKA_TENANTS: "faults,someone_else", WORKER_METRICS_PORT: String(await freePort()), SHUTDOWN_TIMEOUT: "5", KAFKA_SESSION_TIMEOUT_MS: "10000" };
    worker = await startWorker();
    const { Kafka, logLevel } = await import("kafkajs");
    kafkaClient = new Kafka({ clientId: "reliability-test", brokers: [kafka.brokers], logLevel: logLevel.NOTHING, connectionTimeout: 2_000, requestTimeout: 5_000, retry: { retries: 2, initialRetryTime: 100, maxRetryTime: 1_000 } });
    producer = kafkaClient.producer({ allowAutoTopicCreation: false });
    await producer.connect();
    server = await Server.start({ ...env, STORE_TIMEOUT_MS: "1000" });
    // ground truth of the readers: r_j has user_age = j (written, hence cached)
    const records = Array.from({ length: READ_ENTITIES }, (_, j) => ({ entity_id: `r_${j}`, event_time: "2025-01-01T00:00:00Z", features: { user_age: j } }));
    expect((await post(server.base, W, { entity_type: "user", records }, key)).status).toBe(200);
    readers = new LoadLoop(reader, { concurrency: 6, maxRequests: 2_000_000, maxMs: 600_000 });
    writers = new LoadLoop(writer, { concurrency: 2, maxRequests: 2_000_000, maxMs: 600_000 });
    events = new EventProducer(producer);
    await cacheWarm();
    await caughtUp("the worker to store the first events");
  }, 300_000);

  afterAll(async () => {
    await readers?.stop();
    await writers?.stop();
    await events?.stop();
    await producer?.disconnect().catch(() => {});
    await worker?.stop("SIGKILL");
    await server?.stop("SIGKILL");
    await Promise.all([pg?.stop(), redis?.stop(), kafka?.stop()]);
  }, 120_000);

  test("baseline: no failures", async () => {
    const p = await phase("baseline", () => Bun.sleep(2000));
    expect(describeFailures(failures(readers, p.from, p.to))).toEqual([]);
    expect(describeFailures(failures(writers, p.from, p.to))).toEqual([]);
  }, 30_000);

  test("Redis killed and restarted: reads and writes go on from PostgreSQL", async () => {
    const p = await phase("redis outage", async () => {
      await redis.stopServer({ hard: true });
      await Bun.sleep(4000);
      const t0 = performance.now();
      await redis.startServer();
      recovery.redis_cache_ok_ms = await until("readyz cache ok", async () => (await readyz())?.stores.cache === "ok", 60_000, 20);
      await cacheWarm();
      recovery.redis_cache_serving_again_ms = Math.round(performance.now() - t0);
    });
    const r = failures(readers, p.from, p.to);
    const w = failures(writers, p.from, p.to);
    figure("Redis outage (4 s, SIGKILL): failed online reads / writes", { reads: r.length, writes: w.length, reads_total: readers.between(p.from, p.to).length, writes_total: writers.between(p.from, p.to).length });
    figure("Redis outage: recovery after restart (ms): readyz cache ok / cache serving all reads again", [Math.round(recovery.redis_cache_ok_ms ?? 0), recovery.redis_cache_serving_again_ms]);
    expect(describeFailures(r)).toEqual([]);
    expect(describeFailures(w)).toEqual([]);
    expect(wrongValues).toEqual([]);
  }, 120_000);

  test("PostgreSQL stopped and restarted: cached online reads never fail; writes 503 and recover", async () => {
    let stoppedAt = 0;
    let restartedAt = 0;
    const p = await phase("postgres outage", async () => {
      stoppedAt = readers.now();
      await pg.stopServer();
      expect((await readyz())?.status).toBe("degraded");
      await Bun.sleep(4000);
      await pg.startServer();
      restartedAt = writers.now();
      await until("a write to succeed again", () => writers.outcomes.some((o) => o.status === 200 && o.at > restartedAt), 60_000, 20);
      const firstOk = Math.min(...writers.outcomes.filter((o) => o.status === 200 && o.at > restartedAt).map((o) => o.at + o.ms));
      recovery.postgres_write_ms = Math.round(firstOk - restartedAt);
      await until("readyz ok", async () => (await readyz())?.status === "ok", 60_000, 20);
      await Bun.sleep(1000);
    });
    const r = failures(readers, p.from, p.to);
    const w = failures(writers, p.from, p.to);
    // a write sent within a second of the first answered one may still meet a connection of the
    // pool that has not reconnected yet (once in CI, on a busy machine)
    const wOutside = w.filter((o) => o.at + o.ms < stoppedAt || o.at > restartedAt + (recovery.postgres_write_ms ?? 0) + 1000);
    figure("PostgreSQL outage (4 s, fast shutdown): failed online reads / writes", { reads: r.length, writes: w.length, reads_total: readers.between(p.from, p.to).length, writes_total: writers.between(p.from, p.to).length, write_statuses: [...new Set(w.map((o) => o.status))] });
    figure("PostgreSQL outage: first successful write after restart (ms)", recovery.postgres_write_ms);
    expect(describeFailures(r)).toEqual([]);
    expect(wrongValues).toEqual([]);
    // writes failed only while PostgreSQL was down, and cleanly (503, never a 500 or a reset)
    expect(w.length).toBeGreaterThan(0);
    expect([...new Set(w.map((o) => o.status))]).toEqual([503]);
    expect(describeFailures(wOutside)).toEqual([]);
  }, 120_000);

  test("Kafka broker stopped and restarted: the API is unaffected; the worker catches up", async () => {
    const before = events.acked.size;
    const p = await phase("kafka outage", async () => {
      await kafka.stopServer();
      await Bun.sleep(5000);
      await kafka.startServer();
      recovery.kafka_caught_up_ms = await caughtUp("the worker to store every acknowledged event after the broker restart");
    });
    const r = failures(readers, p.from, p.to);
    const w = failures(writers, p.from, p.to);
    figure("Kafka broker outage (5 s, controlled shutdown): failed online reads / writes; events acknowledged / refused by the broker", { reads: r.length, writes: w.length, acked: events.acked.size - before, refused: events.failed.size });
    figure("Kafka broker outage: every acknowledged event stored (ms after the broker was back)", Math.round(recovery.kafka_caught_up_ms ?? 0));
    // The API does not use Kafka: nothing fails, except that this shared 2-core machine, busy
    // restarting the broker while the worker catches up, may shed a few requests (503 with
    // Retry-After, the documented overload answer); never a 500, a reset or a timeout.
    const total = readers.between(p.from, p.to).length + writers.between(p.from, p.to).length;
    expect(describeFailures([...r, ...w].filter((o) => o.status !== 503))).toEqual([]);
    expect([...r, ...w].filter((o) => o.status === 503).length).toBeLessThanOrEqual(Math.ceil(total * 0.01));
    expect(wrongValues).toEqual([]);
    expect(worker.running).toBe(true);
  }, 240_000);

  test("worker SIGKILLed mid-stream and restarted: nothing lost, nothing stored twice", async () => {
    const p = await phase("worker crash", async () => {
      await Bun.sleep(1000); // mid-stream
      await worker.stop("SIGKILL");
      await Bun.sleep(2000);
      const t0 = performance.now();
      worker = await startWorker();
      recovery.worker_restart_ms = Math.round(performance.now() - t0);
      recovery.worker_caught_up_ms = (await caughtUp("the restarted worker to store every acknowledged event")) + recovery.worker_restart_ms;
    });
    figure("worker SIGKILL (KAFKA_SESSION_TIMEOUT_MS=10000): restarted worker healthy after (ms) / every acknowledged event stored after (ms)", [recovery.worker_restart_ms, Math.round(recovery.worker_caught_up_ms ?? 0)]);
    expect(describeFailures(failures(readers, p.from, p.to))).toEqual([]);
    expect(describeFailures(failures(writers, p.from, p.to))).toEqual([]);
  }, 240_000);

  test("the stored state equals the ground truth: every acknowledged write once, online = history", async () => {
    await readers.stop();
    await writers.stop();
    await events.stop();
    const acked = writers.outcomes.filter((o) => o.status === 200).map((o) => o.i as number);
    const unacked = writers.outcomes.filter((o) => o.status !== 200).map((o) => o.i as number);
    expect(acked.length).toBeGreaterThan(100);
    // history: each acknowledged value is the one current at its own event time
    const check = [...acked, ...unacked];
    const present = new Map<number, boolean>();
    for (let k = 0; k < check.length; k += 2000) {
      const chunk = check.slice(k, k + 2000);
      const res = await post(server.base, B, { rows: chunk.map((i) => ({ entity_id: `w_${i % WRITE_ENTITIES}`, timestamp: new Date(BASE + i).toISOString() })), feature_names: ["user_age"] }, key, 60_000);
      expect(res.status).toBe(200);
      const body = (await res.json()) as { results: { features: { user_age: unknown }; metadata: { user_age: { event_time: string | null } } }[] };
      body.results.forEach((r, n) => {
        const i = chunk[n] as number;
        present.set(i, r.features.user_age === i && r.metadata.user_age.event_time === new Date(BASE + i).toISOString());
      });
    }
    const lost = acked.filter((i) => !present.get(i));
    const unackedStored = unacked.filter((i) => present.get(i));
    figure("writes: acknowledged / failed / failed but stored anyway (a response lost after the commit)", [acked.length, unacked.length, unackedStored.length]);
    expect(lost).toEqual([]);
    // no duplicates: one history row per (feature, entity, event time)
    const sql = postgres(env.POSTGRES_URL as string, { max: 1, onnotice: () => {} });
    try {
      const dups = await sql`SELECT entity_id, event_time, count(*)::int AS n FROM feature_values WHERE entity_id LIKE 'w\\_%' GROUP BY feature_id, entity_id, event_time HAVING count(*) > 1 LIMIT 5`;
      expect([...dups]).toEqual([]);
      const [{ n }] = (await sql`SELECT count(*)::int AS n FROM feature_values WHERE entity_id LIKE 'w\\_%'`) as unknown as [{ n: number }];
      expect(n).toBe(acked.length + unackedStored.length);
    } finally {
      await sql.end({ timeout: 5 });
    }
    // online (Redis, after two outages) agrees with history for every entity
    const ids = Array.from({ length: WRITE_ENTITIES }, (_, j) => `w_${j}`);
    const online = (await (await post(server.base, O, { entity_ids: ids, feature_names: ["user_age"] }, key)).json()) as { results: { features: { user_age: unknown } }[] };
    const latest = (await (await post(server.base, B, { entity_ids: ids, feature_names: ["user_age"], timestamp: "2030-01-01T00:00:00Z" }, key)).json()) as { results: { features: { user_age: unknown } }[] };
    expect(online.results.map((r) => r.features.user_age)).toEqual(latest.results.map((r) => r.features.user_age));
    figure("load during the fault runs", { reads: readers.outcomes.length, writes: writers.outcomes.length, events: events.count });
  }, 120_000);

  test("Kafka: every acknowledged event stored exactly once; none of a tenant outside KAFKA_TENANTS", async () => {
    await caughtUp("the worker to store the last events");
    const stored = await storedEvents("faults");
    const accepted = [...events.acked].filter((n) => !intruderEvent(n));
    const lost = accepted.filter((n) => !stored.has(n));
    const twice = [...stored].filter(([, count]) => count > 1);
    const unackedStored = [...events.failed].filter((n) => !intruderEvent(n) && stored.has(n));
    figure("Kafka events: produced / acknowledged / refused by the broker / refused but stored anyway / stored twice", [events.count, events.acked.size, events.failed.size, unackedStored.length, twice.length]);
    expect(lost).toEqual([]);
    expect(twice).toEqual([]);
    // tenant isolation beyond HTTP: nothing of the intruder's events reached its store
    expect((await storedEvents("intruder")).size).toBe(0);
    const ids = Array.from({ length: 100 }, (_, j) => `k_${j}`).filter((_, j) => j % 10 === 9);
    const res = await post(server.base, O, { entity_ids: ids, feature_names: ["user_age"] }, intruderKey);
    const body = (await res.json()) as { results: { metadata: { user_age: { status: string } } }[] };
    expect(body.results.map((r) => r.metadata.user_age.status)).toEqual(ids.map(() => "not_found"));
    // ...and every one of them went to the dead-letter topic as `forbidden`
    const intruders = [...events.acked].filter(intruderEvent);
    const seen = new Map<number, string>();
    const consumer = kafkaClient.consumer({ groupId: `dlq-check-${Date.now()}` });
    await consumer.connect();
    try {
      await consumer.subscribe({ topic: DLQ, fromBeginning: true });
      await consumer.run({
        eachMessage: async ({ message }) => {
          const v = JSON.parse(String(message.value)) as { tenant: string; event_time: string };
          if (v.tenant === "intruder") seen.set(Date.parse(v.event_time) - KBASE, String(message.headers?.["error-code"] ?? ""));
        },
      });
      await until("the intruder's events in the DLQ", () => intruders.every((n) => seen.has(n)), 60_000, 200);
    } finally {
      await consumer.disconnect();
    }
    expect(new Set(intruders.map((n) => seen.get(n)))).toEqual(new Set(["forbidden"]));
    figure("events of a tenant outside KAFKA_TENANTS: produced / in the DLQ (forbidden) / stored", [intruders.length, seen.size, 0]);
  }, 180_000);
});
