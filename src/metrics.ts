/**
 * Prometheus metrics (prefix `feature_store_`), one fresh registry per process. Labels never
 * hold a tenant, a key or an entity id; routes are labelled by their template.
 */
import type * as Prom from "prom-client";
// prom-client's classes from their own files: its index also loads the Pushgateway (node:http),
// the cluster aggregator and every default metric (OpenTelemetry's API), about a sixth of the
// CPU of a compiled server's start; the default metrics are loaded when they are registered (collectDefaults).
// @ts-expect-error untyped deep path (the classes of the typed index)
import CounterClass from "prom-client/lib/counter.js";
// @ts-expect-error untyped deep path
import GaugeClass from "prom-client/lib/gauge.js";
// @ts-expect-error untyped deep path
import HistogramClass from "prom-client/lib/histogram.js";
// @ts-expect-error untyped deep path
import RegistryClass from "prom-client/lib/registry.js";

const Counter = CounterClass as typeof Prom.Counter;
type Counter<T extends string = string> = Prom.Counter<T>;
const Gauge = GaugeClass as typeof Prom.Gauge;
type Gauge<T extends string = string> = Prom.Gauge<T>;
const Histogram = HistogramClass as typeof Prom.Histogram;
type Histogram<T extends string = string> = Prom.Histogram<T>;
const Registry = RegistryClass as typeof Prom.Registry;
type Registry = Prom.Registry;

const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const AGE_BUCKETS = [1, 10, 60, 300, 900, 3600, 4 * 3600, 86400, 7 * 86400, 30 * 86400, 365 * 86400];
const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const SIZE_BUCKETS = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];
const FRESHNESS_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400];

/** The Redis online store's generation protocol (store/redis/generation.ts); exported only by a process that uses Redis. */
export class RedisCacheMetrics {
  readonly generation: Gauge;
  readonly bumps: Counter<"reason">;
  readonly available: Gauge;

  constructor(registry: Registry) {
    this.generation = new Gauge({ name: "feature_store_cache_generation", help: "Redis cache generation this process reads and writes.", registers: [registry] });
    this.bumps = new Counter({
      name: "feature_store_cache_generation_bumps_total",
      help: "Redis cache generations started by this process (reason: write_failed, clear).",
      labelNames: ["reason"] as const,
      registers: [registry],
    });
    this.available = new Gauge({
      name: "feature_store_cache_available",
      help: "1 while this process reads online values from Redis, 0 while it reads the database instead (outage, quarantine, pending invalidation).",
      registers: [registry],
    });
  }
}

/**
 * A counter child counted in a plain number, added to prom-client's series when the registry is
 * read (the counter's `collect`): prom-client keys the labels object on every `inc`, even of a
 * child bound once, which was a few percent of the CPU of an online lookup.
 */
class CounterTally {
  pending = 0;
  constructor(private readonly child: { inc(n: number): void }) {}

  inc(n = 1): void {
    this.pending += n;
  }

  flush(): void {
    if (this.pending === 0) return;
    const n = this.pending;
    this.pending = 0;
    this.child.inc(n);
  }
}

/** prom-client's key of a labels object (lib/util.js hashObject; the version is pinned, and test/unit/metrics-tally.test.ts compares the expositions). */
function seriesKey(labels: Record<string, string>, sortedLabelNames: readonly string[]): string {
  let key = "";
  for (const name of sortedLabelNames) if (labels[name] !== undefined) key += `${name}:${labels[name]},`;
  return key;
}

/** prom-client's record of one histogram series (lib/histogram.js). */
interface HistogramEntry {
  labels: Record<string, string>;
  bucketValues: Record<number, number>;
  sum: number;
  count: number;
}

/**
 * A histogram series observed into plain numbers (a count per bucket, the sum, the count) and
 * added to prom-client's record of the series when the registry is read (the histogram's
 * `collect`): the exposition is exactly what observing each value through prom-client gives.
 */
class HistogramTally {
  private readonly counts: Float64Array;
  private sum = 0;
  private count = 0;

  constructor(
    private readonly histogram: Histogram<string>,
    private readonly labels: Record<string, string>,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length);
  }

  observe(v: number): void {
    if (!Number.isFinite(v)) throw new TypeError(`Value is not a valid number: ${v}`);
    const b = this.bounds;
    // prom-client's findBound: the first bucket whose upper bound is >= v; above the last, only +Inf (the count)
    for (let i = 0; i < b.length; i++) {
      if (v <= (b[i] as number)) {
        this.counts[i] = (this.counts[i] as number) + 1;
        break;
      }
    }
    this.sum += v;
    this.count++;
  }

  flush(): void {
    if (this.count === 0) return;
    const h = this.histogram as unknown as { hashMap: Record<string, HistogramEntry>; sortedLabelNames: string[] };
    const key = seriesKey(this.labels, h.sortedLabelNames);
    let e = h.hashMap[key];
    if (e === undefined) {
      e = { labels: this.labels, bucketValues: Object.fromEntries(this.bounds.map((b) => [b, 0])), sum: 0, count: 0 };
      h.hashMap[key] = e;
    }
    for (let i = 0; i < this.bounds.length; i++) {
      const n = this.counts[i] as number;
      if (n === 0) continue;
      e.bucketValues[this.bounds[i] as number] = (e.bucketValues[this.bounds[i] as number] ?? 0) + n;
      this.counts[i] = 0;
    }
    e.sum += this.sum;
    e.count += this.count;
    this.sum = 0;
    this.count = 0;
  }
}

/** The server's metrics. */
export class Metrics {
  readonly registry = new Registry();
  /** Tallies of the per-request series, added to prom-client's at every read of the registry. */
  private readonly tallies: { flush(): void }[] = [];
  private readonly flushTallies = (): void => {
    for (const t of this.tallies) t.flush();
  };
  readonly httpRequests = new Counter({
    name: "feature_store_http_requests_total",
    help: "HTTP requests answered, by route template, method and status.",
    labelNames: ["route", "method", "status"] as const,
    registers: [this.registry],
    collect: this.flushTallies,
  });
  readonly httpDuration = new Histogram({
    name: "feature_store_http_request_duration_seconds",
    help: "HTTP request latency in seconds, by route template and method.",
    labelNames: ["route", "method"] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
    collect: this.flushTallies,
  });
  readonly lookups = new Counter({
    name: "feature_store_lookups_total",
    help: "Feature values looked up (online and batch), by outcome: present, not_found, expired.",
    labelNames: ["status"] as const,
    registers: [this.registry],
    collect: this.flushTallies,
  });
  readonly cacheRequests = new Counter({
    name: "feature_store_cache_requests_total",
    help: "Online cache look-ups per value: hit, miss (answered by the database), error (cache unavailable).",
    labelNames: ["result"] as const,
    registers: [this.registry],
    collect: this.flushTallies,
  });
  readonly servedValueAge = new Histogram({
    name: "feature_store_served_value_age_seconds",
    help: "Age (now - event_time) of values served online as present, seconds; observed once per entity and event time in a response.",
    labelNames: ["entity_type"] as const,
    buckets: AGE_BUCKETS,
    registers: [this.registry],
    collect: this.flushTallies,
  });
  readonly storeUp = new Gauge({
    name: "feature_store_store_up",
    help: "1 when the store answered its last health check, else 0 (store: database, cache).",
    labelNames: ["store"] as const,
    registers: [this.registry],
  });
  readonly valuesWritten = new Counter({
    name: "feature_store_values_written_total",
    help: "Feature values accepted by writes (identical re-sends included).",
    registers: [this.registry],
  });
  private redis: RedisCacheMetrics | undefined;

  /** The Redis online store's metrics, registered the first time a Redis store asks (one set per registry). */
  get redisCache(): RedisCacheMetrics {
    this.redis ??= new RedisCacheMetrics(this.registry);
    return this.redis;
  }

  private defaultsWanted: boolean;

  /**
   * @param opts.defaults the process metrics of prom-client (`feature_store_process_*`,
   *   `feature_store_nodejs_*`): registered by {@link collectDefaults}, at the latest when the
   *   registry is first read (a scrape), so that a server's start does not pay for them (~2 ms
   *   of CPU, most of it one heap statistics call; nothing the first request needs).
   */
  constructor(opts: { defaults?: boolean } = {}) {
    this.defaultsWanted = opts.defaults !== false;
    if (this.defaultsWanted) {
      const read = this.registry.metrics.bind(this.registry);
      this.registry.metrics = async () => {
        await this.collectDefaults();
        return read();
      };
    }
    for (const label of ["present", "not_found", "expired"]) this.lookups.inc({ status: label }, 0);
    for (const label of ["hit", "miss", "error"]) this.cacheRequests.inc({ result: label }, 0);
  }

  private defaultsLoading: Promise<void> | undefined;

  /** Registers the default process metrics now (loading their module first), if wanted and not done yet. */
  collectDefaults(): Promise<void> {
    if (!this.defaultsWanted) return this.defaultsLoading ?? Promise.resolve();
    this.defaultsWanted = false;
    // @ts-expect-error untyped deep path (the index's collectDefaultMetrics)
    this.defaultsLoading = import("prom-client/lib/defaultMetrics.js").then((m: { default: typeof Prom.collectDefaultMetrics }) => {
      m.default({ register: this.registry, prefix: "feature_store_" });
      // Bun's heapStats() behind these gauges stalls the event loop for milliseconds per scrape
      for (const name of ["total", "used", "available"]) this.registry.removeSingleMetric(`feature_store_nodejs_heap_space_size_${name}_bytes`);
    });
    return this.defaultsLoading;
  }

  // Tallies of the per-request series (see CounterTally, HistogramTally).
  private tally<T extends { flush(): void }>(t: T): T {
    this.tallies.push(t);
    return t;
  }
  private readonly lookupChildren = {
    present: this.tally(new CounterTally(this.lookups.labels("present"))),
    not_found: this.tally(new CounterTally(this.lookups.labels("not_found"))),
    expired: this.tally(new CounterTally(this.lookups.labels("expired"))),
  };
  private readonly cacheChildren = {
    hit: this.tally(new CounterTally(this.cacheRequests.labels("hit"))),
    miss: this.tally(new CounterTally(this.cacheRequests.labels("miss"))),
    error: this.tally(new CounterTally(this.cacheRequests.labels("error"))),
  };
  private readonly ageChildren = new Map<string, HistogramTally>();
  private readonly httpChildren = new Map<string, { count: CounterTally; duration: HistogramTally }>();
  private readonly httpDurations = new Map<string, HistogramTally>();

  /** Counts looked-up values by outcome (zeros are skipped). */
  countLookups(present: number, notFound: number, expired: number): void {
    if (present > 0) this.lookupChildren.present.inc(present);
    if (notFound > 0) this.lookupChildren.not_found.inc(notFound);
    if (expired > 0) this.lookupChildren.expired.inc(expired);
  }

  /** Counts online cache look-ups by result. */
  countCache(result: "hit" | "miss" | "error", n: number): void {
    this.cacheChildren[result].inc(n);
  }

  /** The served-value age histogram of an entity type. */
  servedValueAgeOf(entityType: string): { observe(seconds: number): void } {
    let h = this.ageChildren.get(entityType);
    if (h === undefined) {
      h = this.tally(new HistogramTally(this.servedValueAge, { entity_type: entityType }, AGE_BUCKETS));
      this.ageChildren.set(entityType, h);
    }
    return h;
  }

  /** Counts and times one HTTP request (route template, method, status). */
  observeRequest(route: string, method: string, status: number, seconds: number): void {
    const c = this.httpChild(route, method, status);
    c.count.inc();
    c.duration.observe(seconds);
  }

  /**
   * {@link observeRequest} of one route and method, bound once: the series of each status are
   * found by the status alone (no key string to build and hash per request; the online fast path).
   */
  requestObserver(route: string, method: string): (status: number, seconds: number) => void {
    const byStatus = new Map<number, { count: CounterTally; duration: HistogramTally }>();
    return (status, seconds) => {
      let c = byStatus.get(status);
      if (c === undefined) {
        c = this.httpChild(route, method, status);
        byStatus.set(status, c);
      }
      c.count.inc();
      c.duration.observe(seconds);
    };
  }

  private httpChild(route: string, method: string, status: number): { count: CounterTally; duration: HistogramTally } {
    const key = `${route} ${method} ${status}`;
    let c = this.httpChildren.get(key);
    if (c === undefined) {
      const durationKey = `${route} ${method}`;
      let duration = this.httpDurations.get(durationKey);
      if (duration === undefined) {
        duration = this.tally(new HistogramTally(this.httpDuration, { route, method }, LATENCY_BUCKETS));
        this.httpDurations.set(durationKey, duration);
      }
      c = { count: this.tally(new CounterTally(this.httpRequests.labels(route, method, String(status)))), duration };
      this.httpChildren.set(key, c);
    }
    return c;
  }
}

/**
 * The stream worker's metrics (prefix `feature_store_worker_`), registered on the process's one
 * Registry (`deps.metrics.registry`) so that store and cache metrics are exported next to them.
 */
export class WorkerMetrics {
  /** Messages handled, by outcome; `duplicate` = valid, but every value was an identical re-send. */
  readonly messages: Counter<"outcome">;
  /** Seconds from taking a batch to having its offsets committed (store, DLQ and retries included). */
  readonly batchDuration: Histogram;
  /** Messages per batch. */
  readonly batchSize: Histogram;
  /** High watermark minus the next offset to process, per assigned partition. */
  readonly lag: Gauge<"topic" | "partition">;
  /** Seconds from a stored message's event_time to the moment its values were servable. */
  readonly freshness: Histogram;
  /** Retries of a batch step that failed (store, dlq, commit). */
  readonly retries: Counter<"stage">;

  constructor(registry: Registry) {
    const registers = [registry];
    this.messages = new Counter({
      name: "feature_store_worker_messages_total",
      help: "Messages handled by the stream worker, by outcome: stored, duplicate (every value an identical re-send), dlq.",
      labelNames: ["outcome"] as const,
      registers,
    });
    this.batchDuration = new Histogram({
      name: "feature_store_worker_batch_duration_seconds",
      help: "Time to store a batch and commit its offsets, seconds (retries included).",
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.batchSize = new Histogram({
      name: "feature_store_worker_batch_size",
      help: "Messages per batch stored by the stream worker.",
      buckets: SIZE_BUCKETS,
      registers,
    });
    this.lag = new Gauge({
      name: "feature_store_worker_consumer_lag",
      help: "Messages not yet processed per partition: high watermark minus the next offset to process.",
      labelNames: ["topic", "partition"] as const,
      registers,
    });
    this.freshness = new Histogram({
      name: "feature_store_worker_freshness_seconds",
      help: "Time from a message's event_time until its values were stored and servable, seconds.",
      buckets: FRESHNESS_BUCKETS,
      registers,
    });
    this.retries = new Counter({
      name: "feature_store_worker_retries_total",
      help: "Retries of a failed batch step, by stage: store, dlq, commit.",
      labelNames: ["stage"] as const,
      registers,
    });
    for (const outcome of ["stored", "duplicate", "dlq"] as const) this.messages.inc({ outcome }, 0);
    for (const stage of ["store", "dlq", "commit"] as const) this.retries.inc({ stage }, 0);
  }
}

/** What admission metrics read at scrape time (an `Admission`, `EventLoopLag`). */
interface AdmissionGauges {
  inFlight(): number;
  queued(): number;
}

/** The online lane's admission control (api/middleware/shed.ts), on the server's registry. */
export class ShedMetrics {
  /** Requests refused with 503, by reason. */
  readonly shed: Counter<"reason">;

  constructor(registry: Registry, read: AdmissionGauges & { lagSeconds(): number }) {
    const registers = [registry];
    this.shed = new Counter({
      name: "feature_store_http_requests_shed_total",
      help: "API requests refused with 503 by admission control, by reason: overloaded (event-loop lag), queue_full, queue_timeout, deadline.",
      labelNames: ["reason"] as const,
      registers,
    });
    for (const reason of ["overloaded", "queue_full", "queue_timeout", "deadline"]) this.shed.inc({ reason }, 0);
    new Gauge({ name: "feature_store_http_requests_in_flight", help: "API requests being processed now (admitted, not yet answered).", registers, collect() { this.set(read.inFlight()); } });
    new Gauge({ name: "feature_store_http_requests_queued", help: "API requests waiting for admission now.", registers, collect() { this.set(read.queued()); } });
    new Gauge({
      name: "feature_store_event_loop_lag_seconds",
      help: "Event-loop lag seen by admission control (sampled while API requests arrive), seconds.",
      registers,
      collect() {
        this.set(read.lagSeconds());
      },
    });
  }
}

/** The bulk lane's admission control (lane/admission.ts), on the server's registry. */
export class BulkAdmissionMetrics {
  /** Jobs refused with 503, by reason. */
  readonly shed: Counter<"reason">;

  constructor(registry: Registry, read: AdmissionGauges) {
    const registers = [registry];
    this.shed = new Counter({
      name: "feature_store_bulk_jobs_shed_total",
      help: "Training queries and writes refused with 503 by the bulk lane's admission control, by reason: queue_full, queue_timeout.",
      labelNames: ["reason"] as const,
      registers,
    });
    for (const reason of ["queue_full", "queue_timeout"]) this.shed.inc({ reason }, 0);
    new Gauge({ name: "feature_store_bulk_jobs_in_flight", help: "Training queries and writes running in the bulk lane now (a streamed answer counts until its last chunk).", registers, collect() { this.set(read.inFlight()); } });
    new Gauge({ name: "feature_store_bulk_jobs_queued", help: "Training queries and writes waiting for a bulk-lane slot now.", registers, collect() { this.set(read.queued()); } });
  }
}

/** Per-key rate limiting (api/middleware/rate-limit.ts); registered only when a limit is set. */
export class RateLimitMetrics {
  /** Requests refused with 429. */
  readonly limited: Counter;

  constructor(registry: Registry) {
    this.limited = new Counter({ name: "feature_store_rate_limited_total", help: "API requests refused with 429 because their key was over its rate limit.", registers: [registry] });
  }
}
