/**
 * The online fast path: `POST /api/v1/features/online` and `GET /healthz` answered outside Hono's
 * middleware chain, by the same checks called as plain functions, in the same order and with
 * the same answers (test/contract/online-fast-path.test.ts runs one corpus through both and compares
 * status, headers and bodies). Hono's chain (context, composed middlewares, router, header
 * merging) was about 15% of the CPU of an online 1x10 lookup.
 *
 * Anything unusual is left to the Hono app, decided before the fast path has done anything
 * that counts (an admission slot, a rate-limit hit, a metric): another method or path, a query
 * string, the drain, a body without a Content-Length or over the limit, a key the in-memory ring
 * does not know (Hono's path may look it up in the database, or answer 401), a key without the
 * read scope (403). From then on the fast path answers itself: admission control (503), the rate
 * limit (429), the body (400), the lookup (200, 404, 503) and any error, exactly as the chain
 * would: `observe` (request id, metrics, access log), `shed`, `authenticate`, `rateLimit`, the
 * body limit and the route's handler (api/routes/online.ts `onlineAnswerNow`).
 *
 * Without a rate limit the answer takes one callback on the body's promise and one promise of
 * its own (settled by the answer or the request's deadline, whichever comes first); the lookup
 * itself is synchronous when the in-process cache holds every value (`onlineAnswerNow`).
 */
import type { AccessLog, Logger } from "../log.ts";
import type { Metrics, RateLimitMetrics } from "../metrics.ts";
import { hasScope } from "../serving/keys.ts";
import type { RateDecision, RateLimiter } from "../serving/rate-limit.ts";
import type { Deps } from "../serving/deps.ts";
import { decodeJson } from "../schemas.ts";
import { errorResponse } from "./errors.ts";
import type { OnlineShed } from "./middleware/shed.ts";
import { rateLimited } from "./middleware/rate-limit.ts";
import { onlineAnswerBody, onlineAnswerNow } from "./routes/online.ts";
import { healthzResponse, HEALTHZ, isPath, requestIdOf } from "./healthz.ts";

const ONLINE = "/api/v1/features/online";
const BEARER = /^Bearer\s+(\S+)\s*$/i;
/** The fixed header of a 200 answer (a Response copies the Headers it is given). */
const JSON_HEADERS = new Headers({ "content-type": "application/json" });

/** Requests the fast paths of this process answered (the tests check that it took theirs). */
export const fastPathTaken = { count: 0 };

/** What the fast path shares with the app (the same objects the middlewares use). */
export interface FastPathOptions {
  deps: Deps;
  state: { draining: boolean };
  shed: OnlineShed;
  limiter: RateLimiter;
  /** The rate limiter's metrics (when it is enabled). */
  limitMetrics: RateLimitMetrics | undefined;
  access: AccessLog;
  maxBody: number;
}

/**
 * The fast path: answers a request it takes (a Response or its promise), or `undefined` for the
 * Hono app to answer.
 */
export function fastPath(o: FastPathOptions): (req: Request) => Promise<Response> | Response | undefined {
  const { deps, state, shed, limiter, limitMetrics, access, maxBody } = o;
  const metrics: Metrics = deps.metrics;
  const log: Logger = deps.log;
  const keys = deps.keys;
  const limited = limiter.enabled;
  const limit = String(limiter.limit);

  // the request metrics of the two routes, bound once
  const observed = { POST: metrics.requestObserver(ONLINE, "POST"), GET: metrics.requestObserver(HEALTHZ, "GET") };

  /** After the response: what `observe` does (and `shed`'s Retry-After on every 503). */
  const finish = (res: Response, id: string, method: "POST" | "GET", route: string, start: number): Response => {
    const status = res.status;
    if (status === 503 && !res.headers.has("retry-after")) res.headers.set("retry-after", shed.retryAfter);
    if (state.draining) res.headers.set("connection", "close");
    const seconds = (performance.now() - start) / 1000;
    observed[method](status, seconds);
    access(id, method, route, status, Math.round(seconds * 1e6) / 1000);
    return res;
  };

  /** The 200 answer of the online route (its fixed header copied from one Headers: cheaper than from an object). */
  const ok = (text: string, id: string): Response => {
    const res = new Response(text, { headers: JSON_HEADERS });
    res.headers.set("x-request-id", id);
    return res;
  };

  /**
   * What runs inside the admission slot (`next()` of shed): the rate limit, the body and the
   * lookup, as a promise; gives the slot back when done.
   */
  const work = async (req: Request, id: string, tenant: string, keyId: string): Promise<Response> => {
    try {
      let decision: RateDecision | undefined;
      if (limited) {
        const d = await limiter.check(keyId);
        if (!d.allowed) throw rateLimited(limiter, d, limitMetrics as RateLimitMetrics);
        decision = d;
      }
      let r: Response;
      try {
        r = ok(await onlineAnswerNow(deps, tenant, decodeJson(await req.arrayBuffer())), id);
      } catch (err) {
        r = errorResponse(err, id, log);
      }
      if (decision !== undefined) {
        r.headers.set("ratelimit-limit", limit);
        r.headers.set("ratelimit-remaining", String(decision.remaining));
      }
      return r;
    } finally {
      shed.release();
    }
  };

  /**
   * {@link work} with the least machinery when there is no rate limit (it may ask Redis or the
   * supervisor): one callback on the body's promise, the lookup answered synchronously when the
   * in-process cache holds every value (a promise only otherwise), and the request's deadline
   * (`shed.within`'s) raced by hand: one promise settled by whichever comes first. Bun.serve
   * never hands the body over synchronously, so that one promise is the least there is.
   */
  const inSlot = (req: Request, id: string, tenant: string, keyId: string, arrived: number, start: number): Promise<Response> => {
    if (limited) return settle(work(req, id, tenant, keyId), arrived, id, start);
    const body = req.arrayBuffer();
    return new Promise<Response>((resolve) => {
      let answered = false;
      const pending = shed.deadline(arrived, () => {
        // the work finishes in the background (it gives the slot back); its answer is dropped
        answered = true;
        resolve(finish(errorResponse(shed.refuse("deadline"), id, log), id, "POST", ONLINE, start));
      });
      const done = (r: Response): void => {
        shed.release();
        if (answered) return;
        answered = true;
        if (pending !== undefined) shed.met(pending);
        resolve(finish(r, id, "POST", ONLINE, start));
      };
      const failed = (err: unknown): void => done(errorResponse(err, id, log));
      body.then((buf) => {
        let text: string | Promise<string>;
        try {
          text = onlineAnswerBody(deps, tenant, buf);
        } catch (err) {
          return failed(err);
        }
        if (typeof text === "string") return done(ok(text, id));
        text.then((t) => done(ok(t, id)), failed);
      }, failed);
    });
  };

  /** `work` (a promise) raced against the request's deadline (`shed.within`), then `finish`. */
  const settle = async (work: Promise<Response>, arrived: number, id: string, start: number): Promise<Response> => {
    let res: Response;
    try {
      res = await shed.within(work, arrived);
    } catch (err) {
      res = errorResponse(err, id, log);
    }
    return finish(res, id, "POST", ONLINE, start);
  };

  /** A request queued for a slot: admitted (or refused) later. */
  const queued = async (waiting: Promise<void>, req: Request, id: string, tenant: string, keyId: string, arrived: number, start: number): Promise<Response> => {
    try {
      await waiting;
    } catch (err) {
      return finish(errorResponse(err, id, log), id, "POST", ONLINE, start);
    }
    return inSlot(req, id, tenant, keyId, arrived, start);
  };

  /** The online route: admission control (`shed`), then {@link inSlot}. */
  const online = (req: Request, id: string, tenant: string, keyId: string, start: number): Response | Promise<Response> => {
    // (its arrival is when the fast path took it: one clock read for the deadline and the duration)
    const arrived = start;
    let waiting: Promise<void> | undefined;
    try {
      waiting = shed.admit(arrived);
    } catch (err) {
      return finish(errorResponse(err, id, log), id, "POST", ONLINE, start);
    }
    if (waiting !== undefined) return queued(waiting, req, id, tenant, keyId, arrived, start);
    return inSlot(req, id, tenant, keyId, arrived, start);
  };

  return (req) => {
    const method = req.method;
    if (method === "POST") {
      if (!isPath(req.url, ONLINE) || state.draining) return undefined;
      const h = req.headers;
      const length = h.get("content-length");
      if (length === null || h.has("transfer-encoding") || !(Number(length) <= maxBody)) return undefined;
      const presented = h.get("x-api-key")?.trim() || BEARER.exec(h.get("authorization") ?? "")?.[1];
      if (!presented) return undefined;
      const principal = keys.authenticate(presented);
      if (principal === null || !hasScope(principal.scopes, "read")) return undefined;
      const start = performance.now();
      fastPathTaken.count++;
      return online(req, requestIdOf(h.get("x-request-id")), principal.tenant, principal.keyId, start);
    }
    if (method === "GET") {
      if (!isPath(req.url, HEALTHZ)) return undefined;
      const start = performance.now();
      fastPathTaken.count++;
      const id = requestIdOf(req.headers.get("x-request-id"));
      return finish(healthzResponse(id), id, "GET", HEALTHZ, start);
    }
    return undefined;
  };
}
