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

/** What {@link OnlineShed.within} resolves with when the deadline passed first. */
const LATE: unique symbol = Symbol("late");

/** One request waiting for its deadline in {@link Deadlines}. */
export interface Pending {
  at: number;
  late: (() => void) | undefined;
}

/**
 * The deadlines of the requests in flight, with one timer for all of them: every request has the
 * same timeout, so deadlines come in arrival order and only the oldest unfinished one needs a
 * timer (a finished request is dropped from the front when it is the oldest, else when reached).
 * A request costs an entry in an array, not a timer of its own (a timer armed and cleared per
 * request, and a `Promise.race`, were ~8% of the CPU of an online lookup). A request admitted
 * from the queue may have an earlier deadline than one admitted before it; it is then answered
 * at most the queue's wait (QUEUE_TIMEOUT_MS) late.
 */
class Deadlines {
  /** The entries from `head` to `tail` (the array is reused: emptying it costs no write of its length). */
  private readonly queue: Pending[] = [];
  private head = 0;
  private tail = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;

  /** Calls `late` at `at` (performance.now()) unless {@link done} was called first. */
  add(at: number, late: () => void): Pending {
    const p: Pending = { at, late };
    this.queue[this.tail++] = p;
    if (this.timer === undefined) this.arm(at);
    return p;
  }

  /** The request finished: its deadline no longer matters. */
  done(p: Pending): void {
    p.late = undefined;
    this.compact();
  }

  private arm(at: number): void {
    this.timer = setTimeout(() => this.fire(), Math.max(1, Math.ceil(at - performance.now())));
    this.timer.unref?.();
  }

  private fire(): void {
    this.timer = undefined;
    const now = performance.now();
    while (this.head < this.tail) {
      const p = this.queue[this.head] as Pending;
      if (p.late !== undefined && p.at > now) break;
      this.head++;
      const late = p.late;
      p.late = undefined;
      late?.();
    }
    this.compact();
    if (this.head < this.tail && this.timer === undefined) this.arm((this.queue[this.head] as Pending).at);
  }

  /** Drops finished entries from the front (the timer re-arms for the oldest unfinished one when it fires). */
  private compact(): void {
    while (this.head < this.tail && (this.queue[this.head] as Pending).late === undefined) this.head++;
    // An armed timer is left to fire even when nothing waits any more: clearing and re-arming it
    // for every request would cost what the per-request timer did.
    if (this.head === this.tail) {
      this.head = 0;
      this.tail = 0;
      // (finished entries left in the array are overwritten by the next ones; after a burst, let go)
      if (this.queue.length > 1024) this.queue.length = 0;
    } else if (this.head > 1024 && this.head * 2 > this.tail) {
      this.queue.copyWithin(0, this.head, this.tail);
      this.tail -= this.head;
      this.head = 0;
      this.queue.length = this.tail;
    }
  }
}

/**
 * The online lane's admission control as plain functions: {@link admit} (event-loop lag, the
 * in-flight limit and its queue), {@link release}, and {@link within} (the request deadline).
 * The middleware ({@link shed}) and the online fast path (api/fast-online.ts) share one, so they
 * count the same slots and answer the same 503s.
 */
export class OnlineShed {
  readonly retryAfter: string;
  readonly requestTimeoutMs: number;
  private readonly metrics: ShedMetrics;
  private readonly lag: EventLoopLag | undefined;
  private readonly deadlines = new Deadlines();
  private readonly queueBudget: number;

  constructor(
    readonly admission: Admission,
    registry: Registry,
    opts: Omit<ShedOptions, "exempt">,
  ) {
    this.requestTimeoutMs = opts.requestTimeoutMs;
    this.lag = opts.lag;
    this.retryAfter = String(opts.retryAfterSeconds ?? 1);
    const { queueTimeoutMs } = admission.options;
    this.queueBudget = opts.requestTimeoutMs > 0 ? Math.min(queueTimeoutMs, opts.requestTimeoutMs) : queueTimeoutMs;
    const lag = opts.lag;
    this.metrics = new ShedMetrics(registry, {
      inFlight: () => admission.inFlight,
      queued: () => admission.queued,
      lagSeconds: () => (lag?.lagMs() ?? 0) / 1000,
    });
  }

  /** The 503 of `reason` (counted), to throw. */
  refuse(reason: ShedReason): AppError {
    this.metrics.shed.inc({ reason });
    const detail =
      reason === "deadline"
        ? `the request did not complete within its ${this.requestTimeoutMs} ms deadline; retry after ${this.retryAfter} s`
        : `the server is at capacity; retry after ${this.retryAfter} s`;
    return new AppError("unavailable", detail, { headers: { "retry-after": this.retryAfter } });
  }

  /**
   * Admits a request: `undefined` when it holds a slot now, else a promise resolved once it
   * holds one. Throws (or rejects with) the 503 when it is refused. A slot taken is given back
   * with {@link release}. `now`: the request's arrival (performance.now()), when the caller has read it.
   */
  admit(now?: number): Promise<void> | undefined {
    if (this.lag?.backlogged(now)) throw this.refuse("overloaded");
    if (this.admission.tryAcquire()) return undefined;
    if (this.admission.queued >= this.admission.options.maxQueue) throw this.refuse("queue_full");
    return this.admission.wait(this.queueBudget).then((admitted) => {
      if (!admitted) throw this.refuse("queue_timeout");
    });
  }

  release(): void {
    this.admission.release();
  }

  /**
   * Calls `late` at the deadline of a request that arrived at `arrived` (performance.now()),
   * unless {@link met} is called with what this returns first; `undefined` when requests have no
   * deadline. What {@link within} does, for a caller that settles its own promise (the online
   * fast path), which then answers the 503 `deadline` ({@link refuse}) in `late`.
   */
  deadline(arrived: number, late: () => void): Pending | undefined {
    return this.requestTimeoutMs > 0 ? this.deadlines.add(arrived + this.requestTimeoutMs, late) : undefined;
  }

  /** The request of {@link deadline} was answered: its deadline no longer matters. */
  met(p: Pending): void {
    this.deadlines.done(p);
  }

  /**
   * `work`'s result, or the 503 `deadline` when the request (which arrived at `arrived`,
   * performance.now()) is still unanswered after `requestTimeoutMs`; the work then finishes in
   * the background and its answer is dropped.
   */
  async within<T>(work: Promise<T>, arrived: number): Promise<T> {
    if (this.requestTimeoutMs <= 0) return work;
    let pending: Pending | undefined;
    const outcome = await new Promise<T | typeof LATE>((resolve, reject) => {
      pending = this.deadlines.add(arrived + this.requestTimeoutMs, () => resolve(LATE));
      work.then(resolve, reject);
    });
    this.deadlines.done(pending as Pending);
    if (outcome === LATE) {
      work.catch(() => {}); // finishes in the background; its answer is dropped
      throw this.refuse("deadline");
    }
    return outcome;
  }
}

/** Admission control and per-request deadline for the routes it is mounted on. */
export function shed(admission: Admission, registry: Registry, opts: ShedOptions): MiddlewareHandler<AppEnv> {
  return shedWith(new OnlineShed(admission, registry, opts), opts.exempt);
}

/** {@link shed} over an {@link OnlineShed} shared with the online fast path. */
export function shedWith(online: OnlineShed, exempt?: (c: Context<AppEnv>) => boolean): MiddlewareHandler<AppEnv> {
  const retryAfter = online.retryAfter;
  return async (c, next) => {
    if (exempt?.(c)) {
      await next();
      if (c.res.status === 503 && !c.res.headers.has("retry-after")) c.res.headers.set("retry-after", retryAfter);
      return;
    }
    const arrived = performance.now();
    const waiting = online.admit();
    if (waiting !== undefined) await waiting;
    const work = next().finally(() => online.release());
    await online.within(work, arrived);
    if (c.res.status === 503 && !c.res.headers.has("retry-after")) c.res.headers.set("retry-after", retryAfter);
  };
}
