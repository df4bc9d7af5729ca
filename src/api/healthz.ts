/**
 * What answering `GET /healthz` takes, and nothing else: the request id and the answer. Shared by
 * the fast path (api/fast-online.ts) and by `serve` before its stores and app are loaded
 * (cmd/serve.ts), so that a server answers its liveness probe as soon as it listens.
 */

/** A client's X-Request-Id is kept when it is at most this long and made of [A-Za-z0-9_=-]. */
const REQUEST_ID_MAX = 255;
const REQUEST_ID_BAD = /[^\w\-=]/;

/** The request id of a request whose `X-Request-Id` header is `header`: kept when well-formed, else a new UUID. */
export function requestIdOf(header: string | null): string {
  return !header || header.length > REQUEST_ID_MAX || REQUEST_ID_BAD.test(header) ? crypto.randomUUID() : header;
}

export const HEALTHZ = "/healthz";
const HEALTHZ_BODY = '{"status":"ok"}';

/**
 * Whether the path of an absolute request URL (`http://host:port/path?query`; its path: from the
 * first `/` after the authority, query included) is `path` exactly, without making its string.
 */
export function isPath(url: string, path: string): boolean {
  const at = url.indexOf("/", url.indexOf("//") + 2);
  return at >= 0 ? url.length - at === path.length && url.startsWith(path, at) : path === "/";
}

/** True for `GET /healthz` without a query string (the fast path's; anything else goes to the app). */
export function isHealthz(req: Request): boolean {
  return req.method === "GET" && isPath(req.url, HEALTHZ);
}

/**
 * Answers a `GET /healthz` before the app is there (`serve` while it starts): the answer, with
 * `Connection: close` while draining; `done` is told its request id and how long it took.
 */
export function answerHealthz(req: Request, draining: boolean, done: (id: string, seconds: number) => void): Response {
  const start = performance.now();
  const id = requestIdOf(req.headers.get("x-request-id"));
  const res = healthzResponse(id);
  if (draining) res.headers.set("connection", "close");
  done(id, (performance.now() - start) / 1000);
  return res;
}

/** The answer to `GET /healthz` with request id `id`. */
export function healthzResponse(id: string): Response {
  return new Response(HEALTHZ_BODY, { status: 200, headers: { "content-type": "application/json", "x-request-id": id } });
}
