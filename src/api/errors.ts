/**
 * problem+json (RFC 9457) rendering. Only AppError messages reach clients; anything else is
 * logged with its request id and answered as a bare `internal` problem.
 */
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import { AppError, ERROR_CODES, problemBody, type ErrorCode, type FieldError } from "../errors.ts";

export { problemBody };
import type { Logger } from "../log.ts";
import type { AppEnv } from "./env.ts";

/** A problem+json response. */
export function problemResponse(c: Context<AppEnv>, code: ErrorCode, detail: string, errors?: FieldError[], headers?: Record<string, string>): Response {
  return problemResponseOf(c.get("requestId") ?? "", code, detail, errors, headers);
}

/** {@link problemResponse} for a request id (no Hono context: the online fast path). */
export function problemResponseOf(requestId: string, code: ErrorCode, detail: string, errors?: FieldError[], headers?: Record<string, string>): Response {
  const body = problemBody(code, detail, requestId, errors);
  return new Response(JSON.stringify(body), {
    status: body.status,
    headers: { "content-type": "application/problem+json", "x-request-id": requestId, ...headers },
  });
}

/** The app's onError: AppError -> its problem; HTTPException -> its status; else 500. */
export function errorHandler(log: Logger) {
  return (err: Error, c: Context<AppEnv>): Response => errorResponse(err, c.get("requestId"), log);
}

/** What {@link errorHandler} answers for `err` thrown while answering request `requestId`. */
export function errorResponse(err: unknown, requestId: string | undefined, log: Logger): Response {
  const id = requestId ?? "";
  if (err instanceof AppError) return problemResponseOf(id, err.code, err.message, err.errors, err.headers);
  if (err instanceof HTTPException) {
    const code = (Object.entries(ERROR_CODES).find(([, v]) => v.status === err.status)?.[0] ?? "invalid_request") as ErrorCode;
    return problemResponseOf(id, code, ERROR_CODES[code].title);
  }
  log.error({ err, request_id: requestId }, "unhandled error");
  return problemResponseOf(id, "internal", "an internal error occurred; quote the request id when reporting it");
}
