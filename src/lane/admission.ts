/**
 * The bulk lane's admission control (training queries and writes): its own slots and queue,
 * apart from the online lane's (api/middleware/shed.ts).
 */
import type { Registry } from "prom-client";
import { AppError } from "../errors.ts";
import { Admission } from "../lib/admission.ts";
import { BulkAdmissionMetrics } from "../metrics.ts";

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
  private readonly metrics: BulkAdmissionMetrics;
  private readonly retryAfter: string;

  constructor(o: { maxInFlight: number; maxQueue: number; queueTimeoutMs: number; retryAfterSeconds?: number }, registry: Registry) {
    const a = new Admission({ maxInFlight: o.maxInFlight, maxQueue: o.maxQueue, queueTimeoutMs: o.queueTimeoutMs });
    this.admission = a;
    this.retryAfter = String(o.retryAfterSeconds ?? 1);
    this.metrics = new BulkAdmissionMetrics(registry, { inFlight: () => a.inFlight, queued: () => a.queued });
  }

  /** Takes a slot (waiting in the queue if need be) and returns its release; throws the 503 when refused. */
  async admit(): Promise<() => void> {
    const a = this.admission;
    if (!a.tryAcquire()) {
      const reason = a.queued >= a.options.maxQueue ? "queue_full" : (await a.wait(a.options.queueTimeoutMs)) ? undefined : "queue_timeout";
      if (reason !== undefined) {
        this.metrics.shed.inc({ reason });
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
