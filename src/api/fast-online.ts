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
 * body limit and the route's handler (api/routes/online.ts `onlineAnswer`).
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
import { onlineAnswer } from "./routes/online.ts";
import { healthzResponse, HEALTHZ, pathOf, requestIdOf } from "./healthz.ts";

const ONLINE = "/api/v1/features/online";
const BEARER = /^Bearer\s+(\S+)\s*$/i;

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

  /** After the response: what `observe` does (and `shed`'s Retry-After on every 503). */
  const finish = (res: Response, id: string, method: string, route: string, start: number): Response => {
    if (res.status === 503 && !res.headers.has("retry-after")) res.headers.set("retry-after", shed.retryAfter);
    if (state.draining) res.headers.set("connection", "close");
    const seconds = (performance.now() - start) / 1000;
    metrics.observeRequest(route, method, res.status, seconds);
    access(id, method, route, res.status, Math.round(seconds * 1e6) / 1000);
    return res;
  };

  const online = async (req: Request, id: string, tenant: string, keyId: string, start: number): Promise<Response> => {
    let decision: RateDecision | undefined;
    let res: Response;
    try {
      const arrived = performance.now();
      const waiting = shed.admit();
      if (waiting !== undefined) await waiting;
      // what runs inside the slot: the rate limit, the body and the lookup (`next()` of shed)
      const work = (async (): Promise<Response> => {
        try {
          if (limited) {
            const d = await limiter.check(keyId);
            if (!d.allowed) throw rateLimited(limiter, d, limitMetrics as RateLimitMetrics);
            decision = d;
          }
          let r: Response;
          try {
            const text = await onlineAnswer(deps, tenant, decodeJson(await req.arrayBuffer()));
            r = new Response(text, { status: 200, headers: { "content-type": "application/json", "x-request-id": id } });
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
      })();
      res = await shed.within(work, arrived);
    } catch (err) {
      res = errorResponse(err, id, log);
    }
    return finish(res, id, "POST", ONLINE, start);
  };

  return (req) => {
    const method = req.method;
    if (method === "POST") {
      if (pathOf(req.url) !== ONLINE || state.draining) return undefined;
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
      if (pathOf(req.url) !== HEALTHZ) return undefined;
      const start = performance.now();
      fastPathTaken.count++;
      const id = requestIdOf(req.headers.get("x-request-id"));
      return finish(healthzResponse(id), id, "GET", HEALTHZ, start);
    }
    return undefined;
  };
}
