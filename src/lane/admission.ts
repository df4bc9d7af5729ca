/**
 * The bulk lane's admission control (training queries and writes): its own slots and queue,
 * apart from the online lane's (api/middleware/shed.ts).
 */
import { Counter, Gauge, type Registry } from "prom-client";
import { AppError } from "../errors.ts";
import { Admission, metricOf } from "../lib/admission.ts";

/**
 * The bulk lane's admission (training queries and writes, see src/lane): at most `maxInFlight`
 * jobs at once, more wait in a FIFO queue (at most `maxQueue`, each at most `queueTimeoutMs`),
 * beyond that 503 `unavailable` with `Retry-After`, the same answer the online lane's shedding
 * gives (a client retries either the same way). A slot is held until the job's answer is
 * complete (a streamed batch holds it until its last chunk), not just until the handler
 * returns. Never watches event-loop lag: the lane's work runs on other threads.
 */
export class BulkAdmission {
  readonly admission: Admission;
  private readonly shedTotal: Counter<"reason">;
  private readonly retryAfter: string;

  constructor(o: { maxInFlight: number; maxQueue: number; queueTimeoutMs: number; retryAfterSeconds?: number }, registry: Registry) {
    this.admission = new Admission({ ...o, requestTimeoutMs: 0, maxLagMs: 0 });
    this.retryAfter = String(o.retryAfterSeconds ?? 1);
    const a = this.admission;
    this.shedTotal = metricOf(
      registry,
      "feature_store_bulk_jobs_shed_total",
      () =>
        new Counter({
          name: "feature_store_bulk_jobs_shed_total",
          help: "Training queries and writes refused with 503 by the bulk lane's admission control, by reason: queue_full, queue_timeout.",
          labelNames: ["reason"] as const,
          registers: [registry],
        }),
    );
    for (const reason of ["queue_full", "queue_timeout"]) this.shedTotal.inc({ reason }, 0);
    metricOf(registry, "feature_store_bulk_jobs_in_flight", () => new Gauge({ name: "feature_store_bulk_jobs_in_flight", help: "Training queries and writes running in the bulk lane now (a streamed answer counts until its last chunk).", registers: [registry], collect() { this.set(a.inFlight); } }));
    metricOf(registry, "feature_store_bulk_jobs_queued", () => new Gauge({ name: "feature_store_bulk_jobs_queued", help: "Training queries and writes waiting for a bulk-lane slot now.", registers: [registry], collect() { this.set(a.queued); } }));
  }

  /** Takes a slot (waiting in the queue if need be) and returns its release; throws the 503 when refused. */
  async admit(): Promise<() => void> {
    const a = this.admission;
    if (!a.tryAcquire()) {
      const reason = a.queued >= a.o.maxQueue ? "queue_full" : (await a.wait(a.o.queueTimeoutMs)) ? undefined : "queue_timeout";
      if (reason !== undefined) {
        this.shedTotal.inc({ reason });
        throw new AppError("unavailable", `the bulk lane (training queries and writes) is at capacity; retry after ${this.retryAfter} s`, {
          headers: { "retry-after": this.retryAfter },
        });
      }
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      a.release();
    };
  }
}
