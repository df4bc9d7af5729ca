/**
 * Ingest benchmark: events through `feature-store worker` (Kafka -> PostgreSQL + Redis).
 *
 * 1. Saturated rate: BENCH_INGEST_EVENTS events (10 features each, distinct entities) are
 *    produced to the topic first; then the worker starts and drains them. Events/s = events /
 *    (time from the first to the last stored message, read from the worker's
 *    feature_store_worker_messages_total). Values/s = events/s x 10.
 * 2. Freshness at half that rate: events are produced at a constant rate for BENCH_SECONDS;
 *    every 100th goes to a fresh probe entity, which a prober polls through the HTTP API
 *    (`feature-store serve` on the same stores) every 10 ms until it is `present` (lighter
 *    polling would compete with the worker for the same two cores). Freshness =
 *    first successful read - the moment the event was handed to the producer (an end-to-end
 *    "event to servable" time, measured from outside). The worker's own
 *    feature_store_worker_freshness_seconds histogram is reported next to it.
 *
 * Needs src/stream/worker.ts (the worker) and a Kafka from the test harness; reports "not run"
 * with the reason otherwise, never a made-up figure.
 */
import { existsSync, openSync, closeSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { freePort, startKafka, startPostgres, startRedis, type KafkaService, type PgService, type RedisService } from "../test/harness/services.ts";
import { log, pinned, ProcSampler, ROOT, round, settings, sleep, TMP_DIR, ensureDir, track } from "./lib/common.ts";
import { ENTITY_TYPE, FEATURE_NAMES, record, TENANT } from "./lib/dataset.ts";
import type { IngestResults } from "./lib/report.ts";
import { buildBinary, post, startServer, waitHttp, type StackEnv } from "./lib/server.ts";

const TOPIC = "bench-feature-events";
/** Every PROBE_EVERY-th event of the freshness run is probed; each probe polls every POLL_MS. */
const PROBE_EVERY = 100;
const POLL_MS = 10;

async function workerCounter(url: string): Promise<{ stored: number; duplicate: number; dlq: number; text: string }> {
  const text = await (await fetch(url)).text();
  const get = (o: string): number => Number(new RegExp(`^feature_store_worker_messages_total\\{outcome="${o}"\\} (\\S+)`, "m").exec(text)?.[1] ?? 0);
  return { stored: get("stored"), duplicate: get("duplicate"), dlq: get("dlq"), text };
}

/** Cumulative buckets, sum and count of a Prometheus histogram without labels. */
function histogram(text: string, name: string): { buckets: { le: number; n: number }[]; sum: number; count: number } {
  const buckets: { le: number; n: number }[] = [];
  for (const m of text.matchAll(new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\S+)`, "gm"))) buckets.push({ le: m[1] === "+Inf" ? Number.POSITIVE_INFINITY : Number(m[1]), n: Number(m[2]) });
  const num = (suffix: string): number => Number(new RegExp(`^${name}_${suffix} (\\S+)`, "m").exec(text)?.[1] ?? Number.NaN);
  return { buckets, sum: num("sum"), count: num("count") };
}

/** p-quantile (bucket upper bound) of what a histogram observed between two scrapes. */
function deltaQuantile(before: string, after: string, name: string, q: number): number {
  const a = histogram(before, name).buckets;
  const b = histogram(after, name).buckets.map((x, i) => ({ le: x.le, n: x.n - (a[i]?.n ?? 0) }));
  const total = b[b.length - 1]?.n ?? 0;
  if (total <= 0) return Number.NaN;
  for (const x of b) if (x.n >= q * total) return x.le;
  return Number.NaN;
}

/** Mean of what a histogram observed between two scrapes. */
function deltaMean(before: string, after: string, name: string): number {
  const a = histogram(before, name);
  const b = histogram(after, name);
  return (b.sum - (a.sum || 0)) / Math.max(1, b.count - (a.count || 0));
}

function eventBytes(i: number, eventTime: number, entityPrefix = "user_"): Buffer {
  const r = record(i, 0, 1, eventTime + 60_000);
  return Buffer.from(JSON.stringify({ tenant: TENANT, entity_type: ENTITY_TYPE, entity_id: `${entityPrefix}${i}`, event_time: new Date(eventTime).toISOString(), features: r.features }));
}

/** Runs the ingest benchmark. */
export async function runIngest(opts: { bin?: string } = {}): Promise<IngestResults> {
  if (!existsSync(join(ROOT, "src", "stream", "worker.ts"))) return { ran: false, reason: "src/stream/worker.ts (the Kafka worker) does not exist in this tree" };
  let bin: string;
  try {
    bin = opts.bin ?? (await buildBinary());
  } catch (e) {
    return { ran: false, reason: `the binary did not build: ${(e as Error).message.split("\n")[0]}` };
  }
  let pg: PgService | undefined;
  let redis: RedisService | undefined;
  let kafka: KafkaService | undefined;
  const stops: (() => Promise<void>)[] = [];
  try {
    log("ingest: starting PostgreSQL, Redis and Kafka (test harness)");
    [pg, redis, kafka] = await Promise.all([startPostgres(), startRedis(), startKafka()]);
    await kafka.createTopic(TOPIC, 3);
    await kafka.createTopic(`${TOPIC}-dlq`, 1);
    const stack: StackEnv = { POSTGRES_URL: pg.url, REDIS_URL: redis.url };
    // migrate + key + definitions, and a server for the freshness probes
    const server = await startServer(bin, stack, "ingest");
    stops.push(() => server.stop());

    const { Kafka, logLevel } = await import("kafkajs");
    const kc = new Kafka({ clientId: "feature-store-bench", brokers: [kafka.brokers], logLevel: logLevel.NOTHING });
    const producer = kc.producer({ allowAutoTopicCreation: false });
    await producer.connect();
    stops.push(() => producer.disconnect());

    // 1. pre-produce, then drain
    const events = Math.max(1000, Math.round(settings.ingestEvents));
    const et = Date.now() - 3_600_000;
    log(`ingest: producing ${events} events (10 features each)`);
    const t0 = performance.now();
    const CHUNK = 2000;
    const inflight: Promise<unknown>[] = [];
    for (let start = 0; start < events; start += CHUNK) {
      const messages = [];
      for (let i = start; i < Math.min(events, start + CHUNK); i++) messages.push({ key: `user_${i}`, value: eventBytes(i, et) });
      inflight.push(producer.send({ topic: TOPIC, messages, acks: 1 }));
      if (inflight.length >= 8) await inflight.shift();
    }
    await Promise.all(inflight);
    log(`ingest: produced in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    const metricsPort = await freePort();
    const groupId = `bench-${Date.now()}`;
    const logFile = join(ensureDir(TMP_DIR), "worker-ingest.log");
    const fd = openSync(logFile, "w");
    const worker = track(Bun.spawn({
      cmd: pinned("server", [bin, "worker"]),
      env: {
        ...process.env,
        ...stack,
        LOG_LEVEL: "info",
        HOST: "127.0.0.1",
        KAFKA_BROKERS: kafka.brokers,
        KAFKA_TENANTS: TENANT,
        KAFKA_TOPIC: TOPIC,
        KAFKA_DLQ_TOPIC: `${TOPIC}-dlq`,
        KAFKA_GROUP_ID: groupId,
        WORKER_METRICS_PORT: String(metricsPort),
      },
      stdin: "ignore",
      stdout: fd,
      stderr: fd,
    }));
    closeSync(fd);
    stops.push(async () => {
      worker.kill("SIGTERM");
      const t = setTimeout(() => worker.kill("SIGKILL"), 15_000);
      await worker.exited;
      clearTimeout(t);
    });
    const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
    try {
      await waitHttp(`http://127.0.0.1:${metricsPort}/healthz`, 60_000, () => worker.exitCode === null);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${readFileSync(logFile, "utf8").slice(-2000)}`);
    }
    const drainStart = await workerCounter(metricsUrl);
    const sampler = new ProcSampler(worker.pid);
    let first = Number.NaN;
    let last = Number.NaN;
    let lastCount = -1;
    let firstDone = 0;
    const deadline = performance.now() + 600_000;
    // Progress is read from the group's committed offsets on the broker, not from the worker's
    // /metrics: one scrape costs the worker ~35 ms of CPU (prom-client's heap-space gauges call
    // Bun's heapStats()), so polling it would slow down what is being measured.
    const admin = kc.admin();
    await admin.connect();
    stops.push(() => admin.disconnect());
    const committed = async (): Promise<number> => {
      const res = await admin.fetchOffsets({ groupId, topics: [TOPIC] });
      let n = 0;
      for (const t of res) for (const p of t.partitions) n += Math.max(0, Number(p.offset));
      return n;
    };
    for (;;) {
      const done = await committed();
      const now = performance.now();
      if (done > 0 && Number.isNaN(first)) {
        first = now;
        firstDone = done;
      }
      if (done !== lastCount) {
        last = now;
        lastCount = done;
      }
      if (done >= events) break;
      if (worker.exitCode !== null) throw new Error(`the worker exited (${worker.exitCode}) after ${done} of ${events} events:\n${readFileSync(logFile, "utf8").slice(-2000)}`);
      if (now > deadline || now - last > 60_000) throw new Error(`the worker stalled at ${done} of ${events} events`);
      await sleep(20);
    }
    const usage = sampler.stop();
    const c = await workerCounter(metricsUrl);
    log(`ingest: committed ${lastCount} of ${events} offsets; worker counted ${c.stored} stored, ${c.duplicate} duplicate, ${c.dlq} dead-lettered`);
    const drainBatch = deltaMean(drainStart.text, c.text, "feature_store_worker_batch_size");
    const drainBatchMs = deltaMean(drainStart.text, c.text, "feature_store_worker_batch_duration_seconds") * 1000;
    log(`ingest: drain batches: ${round(drainBatch, 0)} messages on average, ${round(drainBatchMs, 1)} ms each (store + commit)`);
    if (c.dlq > 0) log(`ingest: ${c.dlq} events went to the DLQ (see ${logFile})`);
    const secs = (last - first) / 1000;
    // from the first commit to the last: the events committed after the first commit
    const eps = (events - firstDone) / Math.max(secs, 1e-3);
    log(`ingest: drained ${events} events in ${secs.toFixed(2)} s: ${Math.round(eps)} events/s, ${Math.round(eps * 10)} values/s (worker cpu ${usage.cpu_percent}%)`);

    // 2. freshness at half the saturated rate
    const rate = Math.max(10, Math.round(eps / 2));
    const seconds = settings.seconds;
    log(`ingest: freshness at ${rate} events/s for ${seconds} s (every ${PROBE_EVERY}th event probed over HTTP every ${POLL_MS} ms)`);
    const probes: Promise<number | null>[] = [];
    const tStart = performance.now();
    let sent = 0;
    let probeId = 0;
    const sends: Promise<unknown>[] = [];
    const before = await workerCounter(metricsUrl);
    while (performance.now() - tStart < seconds * 1000) {
      const due = Math.floor(((performance.now() - tStart) / 1000) * rate);
      if (due > sent) {
        const messages = [];
        const probeSends: { id: number; at: number }[] = [];
        for (; sent < due; sent++) {
          const now = Date.now();
          if (sent % PROBE_EVERY === 0) {
            const id = probeId++;
            messages.push({ key: `probe_${id}`, value: eventBytes(id, now, "probe_") });
            probeSends.push({ id, at: performance.now() });
          } else {
            const i = events + sent;
            messages.push({ key: `user_${i}`, value: eventBytes(i, now) });
          }
        }
        sends.push(producer.send({ topic: TOPIC, messages, acks: 1 }));
        for (const p of probeSends) probes.push(probe(server, p.id, p.at));
      }
      await sleep(2);
    }
    await Promise.all(sends);
    const fresh = (await Promise.all(probes)).filter((x): x is number => x !== null).sort((a, b) => a - b);
    const after = await workerCounter(metricsUrl);
    const q = (p: number): number => fresh[Math.min(fresh.length - 1, Math.max(0, Math.ceil(p * fresh.length) - 1))] ?? Number.NaN;
    const lost = probes.length - fresh.length;
    log(`ingest: freshness p50 ${round(q(0.5), 1)} ms, p99 ${round(q(0.99), 1)} ms over ${fresh.length} probes (${lost} not seen within 30 s)`);
    return {
      ran: true,
      events,
      features_per_event: FEATURE_NAMES.length,
      saturated_events_per_s: Math.round(eps),
      saturated_values_per_s: Math.round(eps * FEATURE_NAMES.length),
      freshness_rate_events_per_s: rate,
      freshness_p50_ms: round(q(0.5), 1),
      freshness_p99_ms: round(q(0.99), 1),
      freshness_samples: fresh.length,
      worker_cpu_percent: usage.cpu_percent,
      worker_peak_rss_mib: usage.peak_rss_mib,
      notes: [
        `Worker-reported freshness during the freshness run (feature_store_worker_freshness_seconds, bucket upper bounds): p50 <= ${deltaQuantile(before.text, after.text, "feature_store_worker_freshness_seconds", 0.5)} s, p99 <= ${deltaQuantile(before.text, after.text, "feature_store_worker_freshness_seconds", 0.99)} s; batches of ${round(deltaMean(before.text, after.text, "feature_store_worker_batch_size"), 1)} messages taking ${round(deltaMean(before.text, after.text, "feature_store_worker_batch_duration_seconds") * 1000, 1)} ms on average.`,
        `While draining the pre-produced events: batches of ${round(drainBatch, 0)} messages on average, ${round(drainBatchMs, 1)} ms each (store + commit), worker CPU ${usage.cpu_percent}% of one core.`,
        `During the freshness run the worker stored ${after.stored - before.stored} messages (${after.dlq - before.dlq} to the DLQ); ${lost} probes were not seen within 30 s.`,
        `Freshness is measured end to end: from handing the event to the Kafka producer (acks=1) to the first 200 \`present\` from POST /api/v1/features/online (Redis read path), polled every ${POLL_MS} ms (so up to ${POLL_MS} ms high).`,
      ],
    };
  } catch (e) {
    log(`ingest failed: ${(e as Error).message}`);
    return { ran: false, reason: `failed: ${(e as Error).message.split("\n").slice(0, 3).join(" ")}` };
  } finally {
    for (const s of stops.reverse()) await s().catch(() => {});
    await Promise.all([kafka?.stop(), pg?.stop(), redis?.stop()].map((p) => p?.catch(() => {})));
  }
}

/** Polls the probe entity until its value is served; ms since `at`, or null after 30 s. */
async function probe(server: { url: string; key: string }, id: number, at: number): Promise<number | null> {
  const body = JSON.stringify({ entity_id: `probe_${id}`, feature_names: ["age"] });
  while (performance.now() - at < 30_000) {
    try {
      const text = await post(server, "/api/v1/features/online", body);
      if (text.includes('"present"')) return performance.now() - at;
    } catch {
      /* keep polling */
    }
    await sleep(POLL_MS);
  }
  return null;
}

if (import.meta.main) {
  const r = await runIngest();
  console.log(JSON.stringify(r, null, 2));
  process.exit(0);
}
