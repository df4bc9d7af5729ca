/**
 * problem+json (RFC 9457) rendering. Only AppError messages reach clients; anything else is
 * logged with its request id and answered as a bare `internal` problem.
 */
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { z } from "@hono/zod-openapi";
import { AppError, ERROR_CODES, formatPath, type ErrorCode, type FieldError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { AppEnv } from "./env.ts";

/** The problem body for a code. */
export function problemBody(code: ErrorCode, detail: string, requestId: string, errors?: FieldError[]) {
  const { status, title } = ERROR_CODES[code];
  return {
    type: `urn:feature-store:problem:${code}`,
    title,
    status,
    detail,
    code,
    request_id: requestId,
    ...(errors && errors.length > 0 ? { errors } : {}),
  };
}

/** A problem+json response. */
export function problemResponse(c: Context<AppEnv>, code: ErrorCode, detail: string, errors?: FieldError[], headers?: Record<string, string>): Response {
  const body = problemBody(code, detail, c.get("requestId") ?? "", errors);
  return new Response(JSON.stringify(body), {
    status: body.status,
    headers: { "content-type": "application/problem+json", "x-request-id": c.get("requestId") ?? "", ...headers },
  });
}

/**
 * Wording of zod issues a client can act on (pass as `safeParse(raw, { error: issueWording })`):
 * a missing field is `required` (zod says "expected array, received undefined"), an empty string
 * or list `must not be empty`. Anything else keeps zod's message.
 */
export const issueWording: z.core.$ZodErrorMap = (issue) => {
  if (issue.input === undefined && (issue.code === "invalid_type" || issue.code === "invalid_value")) return "required";
  if (issue.code === "too_small" && issue.minimum === 1 && (issue.origin === "string" || issue.origin === "array")) return "must not be empty";
  return undefined;
};

/** Turns zod issues into `errors` entries: at most one per path (the first), at most 100. */
export function zodErrors(error: z.ZodError): FieldError[] {
  const out: FieldError[] = [];
  const seen = new Set<string>();
  const add = (path: string, message: string) => {
    if (seen.has(path)) return;
    seen.add(path);
    out.push({ path, message });
  };
  for (const i of error.issues) {
    if (i.code === "unrecognized_keys") {
      for (const k of i.keys) add(formatPath([...i.path, k]), `unknown field ${JSON.stringify(k)}`);
    } else {
      add(formatPath(i.path) || "(body)", i.message);
    }
    if (out.length >= 100) break;
  }
  return out.slice(0, 100);
}

/** The app's onError: AppError -> its problem; HTTPException -> its status; else 500. */
export function errorHandler(log: Logger) {
  return (err: Error, c: Context<AppEnv>): Response => {
    if (err instanceof AppError) return problemResponse(c, err.code, err.message, err.errors, err.headers);
    if (err instanceof HTTPException) {
      const code = (Object.entries(ERROR_CODES).find(([, v]) => v.status === err.status)?.[0] ?? "invalid_request") as ErrorCode;
      return problemResponse(c, code, ERROR_CODES[code].title);
    }
    log.error({ err, request_id: c.get("requestId") }, "unhandled error");
    return problemResponse(c, "internal", "an internal error occurred; quote the request id when reporting it");
  };
}
