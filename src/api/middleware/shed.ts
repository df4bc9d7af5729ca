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
 * waited about that long unseen, and answering them cheaply drains the backlog.
 *
 * Every admitted request also has a deadline (`requestTimeoutMs`, queueing included): a
 * request still unanswered then gets a 503 (the work already started is not cancelled; its
 * store calls are bounded by STORE_TIMEOUT_MS). Every 503 of the API carries `Retry-After`.
 */
import type { Context, MiddlewareHandler } from "hono";
import { Counter, Gauge, type Registry } from "prom-client";
import { AppError } from "../../errors.ts";
import type { AppEnv } from "../env.ts";

/** Settings of {@link Admission}. */
export interface AdmissionOptions {
  /** Requests processed at once; 0: unlimited (no queue either). */
  maxInFlight: number;
  /** Requests waiting for a slot at most. */
  maxQueue: number;
  /** Longest wait for a slot, ms. */
  queueTimeoutMs: number;
  /** Deadline of a request from arrival, ms; 0: none. */
  requestTimeoutMs: number;
  /** Event-loop lag above which new requests are refused, ms; 0: not watched. */
  maxLagMs: number;
  /** Seconds sent in `Retry-After` with a 503. */
  retryAfterSeconds?: number;
}

/** How often the event-loop lag is sampled while requests arrive, ms. */
const LAG_SAMPLE_MS = 20;
/**
 * Requests that may arrive during one late stretch of the event loop before the newcomers are
 * refused: a few clients sending heavy requests at once are served; a flood is not.
 */
const LAG_BACKLOG = 8;
/** The lag sampler stops after this long without a request, ms. */
const LAG_IDLE_MS = 2000;

interface Waiter {
  resolve: (admitted: boolean) => void;
  timer: ReturnType<typeof setTimeout>;
  done: boolean;
}

/** The in-flight counter and its wait queue (one per process). */
export class Admission {
  inFlight = 0;
  /** Requests waiting for a slot now. */
  queued = 0;
  /** FIFO of waiters from `head` on; timed-out ones stay (marked done) until reached. */
  private readonly waiters: Waiter[] = [];
  private head = 0;
  /** Lag measured at the last sample, ms. */
  private lastLag = 0;
  /** When the next sample is due (performance.now()). */
  private nextSample = 0;
  /** Requests seen since the last sample. */
  private arrivals = 0;
  private lastRequest = 0;
  private sampler: ReturnType<typeof setInterval> | undefined;

  constructor(readonly o: AdmissionOptions) {}

  /**
   * Event-loop lag now, ms: how late the last sample ran, or how overdue the next one is (a
   * loop that has been busy for that long is noticed before the sample gets to run).
   */
  lagMs(now = performance.now()): number {
    if (this.sampler === undefined) return 0;
    return Math.max(this.lastLag, now - this.nextSample);
  }

  /**
   * True when a request arrives while the event loop runs more than `maxLagMs` late *and*
   * more than {@link LAG_BACKLOG} requests arrived since the last sample: a backlog built up
   * while the loop was busy. (A few clients sending slow requests make the loop late too, but
   * queue little.) Starts the sampler, which runs only while requests arrive.
   */
  lagging(): boolean {
    if (this.o.maxLagMs <= 0) return false;
    const now = performance.now();
    this.lastRequest = now;
    this.arrivals++;
    if (this.sampler === undefined) this.startSampler(now);
    return this.arrivals > LAG_BACKLOG && this.lagMs(now) > this.o.maxLagMs;
  }

  private startSampler(now: number): void {
    this.nextSample = now + LAG_SAMPLE_MS;
    this.lastLag = 0;
    this.sampler = setInterval(() => {
      const t = performance.now();
      this.lastLag = Math.max(0, t - this.nextSample);
      this.nextSample = t + LAG_SAMPLE_MS;
      this.arrivals = 0;
      if (t - this.lastRequest > LAG_IDLE_MS) {
        clearInterval(this.sampler);
        this.sampler = undefined;
        this.lastLag = 0;
      }
    }, LAG_SAMPLE_MS);
    this.sampler.unref?.();
  }

  /** Takes a slot if one is free and nobody waits for one. */
  tryAcquire(): boolean {
    if (this.o.maxInFlight <= 0) return true;
    if (this.inFlight < this.o.maxInFlight && this.queued === 0) {
      this.inFlight++;
      return true;
    }
    return false;
  }

  /**
   * Waits up to `ms` for a slot. Resolves false at once when the queue is full, or when the
   * wait times out.
   */
  wait(ms: number): Promise<boolean> {
    if (this.tryAcquire()) return Promise.resolve(true);
    if (this.queued >= this.o.maxQueue || ms <= 0) return Promise.resolve(false);
    this.queued++;
    return new Promise<boolean>((resolve) => {
      const w: Waiter = {
        resolve,
        done: false,
        timer: setTimeout(() => {
          // Left in the array (skipped when reached): removal from the middle is O(n).
          w.done = true;
          this.queued--;
          resolve(false);
          this.compact();
        }, ms),
      };
      this.waiters.push(w);
    });
  }

  /** Returns a slot: handed to the oldest live waiter, else freed. */
  release(): void {
    if (this.o.maxInFlight <= 0) return;
    while (this.head < this.waiters.length) {
      const w = this.waiters[this.head++] as Waiter;
      if (w.done) continue;
      w.done = true;
      this.queued--;
      clearTimeout(w.timer);
      this.compact();
      w.resolve(true); // the slot passes to it: inFlight unchanged
      return;
    }
    this.compact();
    this.inFlight--;
  }

  /** Drops consumed and timed-out entries from the front of the queue. */
  private compact(): void {
    while (this.head < this.waiters.length && (this.waiters[this.head] as Waiter).done) this.head++;
    if (this.head > 1024 && this.head * 2 > this.waiters.length) {
      this.waiters.splice(0, this.head);
      this.head = 0;
    } else if (this.head === this.waiters.length) {
      this.waiters.length = 0;
      this.head = 0;
    }
  }
}

function metricOf<T>(registry: Registry, name: string, create: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? create();
}

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

/**
 * Admission control and per-request deadline for the routes it is mounted on. Requests that
 * `opts.exempt` picks (the bulk lane's routes, admitted by {@link BulkAdmission}) skip it: they
 * neither take an online slot nor count toward the event-loop lag guard; their 503s still get
 * `Retry-After`.
 */
export function shed(admission: Admission, registry: Registry, opts: { exempt?: (c: Context<AppEnv>) => boolean } = {}): MiddlewareHandler<AppEnv> {
  const { queueTimeoutMs, requestTimeoutMs } = admission.o;
  const retryAfter = String(admission.o.retryAfterSeconds ?? 1);
  const shedTotal = metricOf(
    registry,
    "feature_store_http_requests_shed_total",
    () =>
      new Counter({
        name: "feature_store_http_requests_shed_total",
        help: "API requests refused with 503 by admission control, by reason: overloaded (event-loop lag), queue_full, queue_timeout, deadline.",
        labelNames: ["reason"] as const,
        registers: [registry],
      }),
  );
  for (const reason of ["overloaded", "queue_full", "queue_timeout", "deadline"]) shedTotal.inc({ reason }, 0);
  metricOf(
    registry,
    "feature_store_http_requests_in_flight",
    () =>
      new Gauge({
        name: "feature_store_http_requests_in_flight",
        help: "API requests being processed now (admitted, not yet answered).",
        registers: [registry],
        collect() {
          this.set(admission.inFlight);
        },
      }),
  );
  metricOf(
    registry,
    "feature_store_http_requests_queued",
    () =>
      new Gauge({
        name: "feature_store_http_requests_queued",
        help: "API requests waiting for admission now.",
        registers: [registry],
        collect() {
          this.set(admission.queued);
        },
      }),
  );

  metricOf(
    registry,
    "feature_store_event_loop_lag_seconds",
    () =>
      new Gauge({
        name: "feature_store_event_loop_lag_seconds",
        help: "Event-loop lag seen by admission control (sampled while API requests arrive), seconds.",
        registers: [registry],
        collect() {
          this.set(admission.lagMs() / 1000);
        },
      }),
  );

  const refuse = (reason: "overloaded" | "queue_full" | "queue_timeout" | "deadline"): never => {
    shedTotal.inc({ reason });
    const detail =
      reason === "deadline"
        ? `the request did not complete within its ${requestTimeoutMs} ms deadline; retry after ${retryAfter} s`
        : `the server is at capacity; retry after ${retryAfter} s`;
    throw new AppError("unavailable", detail, { headers: { "retry-after": retryAfter } });
  };

  return async (c, next) => {
    if (opts.exempt?.(c)) {
      await next();
      if (c.res.status === 503 && !c.res.headers.has("retry-after")) c.res.headers.set("retry-after", retryAfter);
      return;
    }
    const arrived = performance.now();
    // Only requests from a listening socket can queue unseen; in-process calls (tests, tools) cannot.
    if ((c.env as unknown) !== undefined && admission.lagging()) refuse("overloaded");
    if (!admission.tryAcquire()) {
      const budget = requestTimeoutMs > 0 ? Math.min(queueTimeoutMs, requestTimeoutMs) : queueTimeoutMs;
      if (admission.queued >= admission.o.maxQueue) refuse("queue_full");
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
