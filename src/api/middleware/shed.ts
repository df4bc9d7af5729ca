/**
 * Admission control for the API: at most `maxInFlight` requests are processed at once; more
 * wait in a short FIFO queue (at most `maxQueue` of them, each at most `queueTimeoutMs`), and
 * anything beyond that is refused at once with 503 `unavailable` and `Retry-After`, before its
 * body is read. Refusing early and cheaply is what keeps the latency of the admitted requests
 * bounded when more load arrives than the process can serve: without it every request waits
 * behind all the others and they all time out together.
 *
 * The in-flight limit sees only requests that are waiting on I/O. When the process is busy on
 * the CPU instead (the embedded SQLite store answers synchronously; large JSON bodies), new
 * requests pile up in socket buffers where no counter sees them; the symptom is event-loop
 * lag. So while the event loop runs more than `maxLagMs` late and requests keep piling up (more
 * than a few since the loop last ran on time), the newcomers are refused too: they have already
 * waited about that long unseen, and answering them cheaply drains the backlog
 * (lib/event-loop-lag.ts).
 *
 * Every admitted request also has a deadline (`requestTimeoutMs`, queueing included): a
 * request still unanswered then gets a 503 (the work already started is not cancelled; its
 * store calls are bounded by STORE_TIMEOUT_MS). Every 503 of the API carries `Retry-After`.
 */
import type { Context, MiddlewareHandler } from "hono";
import type { Registry } from "prom-client";
import { AppError } from "../../errors.ts";
import type { Admission } from "../../lib/admission.ts";
import type { EventLoopLag } from "../../lib/event-loop-lag.ts";
import { ShedMetrics } from "../../metrics.ts";
import type { AppEnv } from "../env.ts";

export { Admission, type AdmissionOptions } from "../../lib/admission.ts";
export { EventLoopLag } from "../../lib/event-loop-lag.ts";

/** Settings of {@link shed} beyond the admission queue's own. */
export interface ShedOptions {
  /** Deadline of a request from arrival, ms; 0: none. */
  requestTimeoutMs: number;
  /** Seconds sent in `Retry-After` with a 503 (default 1). */
  retryAfterSeconds?: number;
  /** The event-loop lag sampler whose backlog refuses newcomers (default: lag not watched). */
  lag?: EventLoopLag;
  /**
   * Requests that skip admission (the bulk lane's routes, admitted by `BulkAdmission`): they
   * neither take an online slot nor count toward the event-loop lag guard; their 503s still
   * get `Retry-After`.
   */
  exempt?: (c: Context<AppEnv>) => boolean;
}

/** Why a request was refused (the `reason` label of `feature_store_http_requests_shed_total`). */
type ShedReason = "overloaded" | "queue_full" | "queue_timeout" | "deadline";

/** Admission control and per-request deadline for the routes it is mounted on. */
export function shed(admission: Admission, registry: Registry, opts: ShedOptions): MiddlewareHandler<AppEnv> {
  const { requestTimeoutMs, lag, exempt } = opts;
  const { queueTimeoutMs, maxQueue } = admission.options;
  const retryAfter = String(opts.retryAfterSeconds ?? 1);
  const metrics = new ShedMetrics(registry, {
    inFlight: () => admission.inFlight,
    queued: () => admission.queued,
    lagSeconds: () => (lag?.lagMs() ?? 0) / 1000,
  });

  const refuse = (reason: ShedReason): never => {
    metrics.shed.inc({ reason });
    const detail =
      reason === "deadline"
        ? `the request did not complete within its ${requestTimeoutMs} ms deadline; retry after ${retryAfter} s`
        : `the server is at capacity; retry after ${retryAfter} s`;
    throw new AppError("unavailable", detail, { headers: { "retry-after": retryAfter } });
  };

  return async (c, next) => {
    if (exempt?.(c)) {
      await next();
      if (c.res.status === 503 && !c.res.headers.has("retry-after")) c.res.headers.set("retry-after", retryAfter);
      return;
    }
    const arrived = performance.now();
    if (lag?.backlogged()) refuse("overloaded");
    if (!admission.tryAcquire()) {
      const budget = requestTimeoutMs > 0 ? Math.min(queueTimeoutMs, requestTimeoutMs) : queueTimeoutMs;
      if (admission.queued >= maxQueue) refuse("queue_full");
      if (!(await admission.wait(budget))) refuse("queue_timeout");
    }
    const work = next().finally(() => admission.release());
    if (requestTimeoutMs > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<"late">((resolve) => {
        timer = setTimeout(() => resolve("late"), Math.max(1, requestTimeoutMs - (performance.now() - arrived)));
      });
      const outcome = await Promise.race([work.then(() => "done" as const), late]).finally(() => clearTimeout(timer));
      if (outcome === "late") {
        work.catch(() => {}); // finishes in the background; its answer is dropped
        refuse("deadline");
      }
    } else {
      await work;
    }
    if (c.res.status === 503 && !c.res.headers.has("retry-after")) c.res.headers.set("retry-after", retryAfter);
  };
}
