/**
 * The closed set of error codes and the one error type the domain throws. The HTTP layer turns
 * an AppError into a problem+json response (api/errors.ts); the CLI into a one-line message.
 */

/** Every error code a client can see, with its HTTP status and title. */
export const ERROR_CODES = {
  invalid_request: { status: 400, title: "Invalid request" },
  unauthenticated: { status: 401, title: "Unauthenticated" },
  forbidden: { status: 403, title: "Forbidden" },
  not_found: { status: 404, title: "Not found" },
  not_acceptable: { status: 406, title: "Not acceptable" },
  conflict: { status: 409, title: "Conflict" },
  payload_too_large: { status: 413, title: "Payload too large" },
  unsupported_media_type: { status: 415, title: "Unsupported media type" },
  rate_limited: { status: 429, title: "Too many requests" },
  internal: { status: 500, title: "Internal error" },
  unavailable: { status: 503, title: "Service unavailable" },
} as const;

/** One of the stable, snake_case error codes. */
export type ErrorCode = keyof typeof ERROR_CODES;

/** A field-level problem, `path` like `records[3].features.user_age`. */
export interface FieldError {
  path: string;
  message: string;
}

/** An expected failure with a message that is safe to show to the client. */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly errors: FieldError[] | undefined;
  readonly headers: Record<string, string> | undefined;

  constructor(
    code: ErrorCode,
    publicMessage: string,
    opts: { cause?: unknown; errors?: FieldError[]; headers?: Record<string, string> } = {},
  ) {
    super(publicMessage, { cause: opts.cause });
    this.name = "AppError";
    this.code = code;
    this.errors = opts.errors;
    this.headers = opts.headers;
  }

  /** HTTP status of this error's code. */
  get status(): number {
    return ERROR_CODES[this.code].status;
  }
}

/** Formats a validation path (`["records", 3, "features", "x"]`) as `records[3].features.x`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const p of path) {
    if (typeof p === "number") out += `[${p}]`;
    else out += out === "" ? String(p) : `.${String(p)}`;
  }
  return out;
}

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
