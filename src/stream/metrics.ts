/**
 * The stream worker's metrics, registered on the process's one Registry (the one in
 * `deps.metrics.registry`) so that store and cache metrics are exported next to them. No label
 * holds a tenant, a key or an entity id.
 */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";

const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const SIZE_BUCKETS = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];
const FRESHNESS_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400];

/** Counters, histograms and gauges of the stream worker (prefix `feature_store_worker_`). */
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
