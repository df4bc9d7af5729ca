import { ERROR_CODES, type ErrorCode, type FieldError } from "../../errors.ts";
import { problemBody } from "../errors.ts";
import { Problem } from "../../schemas.ts";

const DESCRIPTIONS: Record<number, string> = {
  400: "Malformed body, wrong type, missing or unknown field, list over its limit, invalid value",
  401: "No API key, or an unknown, revoked or expired one",
  403: "The API key lacks the scope this operation needs",
  404: "Unknown feature(s)",
  409: "Conflicts with an existing definition",
  413: "Body over the configured limit",
  429: "This API key is over its rate limit (RATE_LIMIT_PER_KEY); retry after `Retry-After` seconds",
  500: "Internal error (never echoes internal messages)",
  503: "A store is unavailable (or an API key the server does not know yet could not be checked against it), the server is at capacity (load shedding) or past the request deadline, or shutting down; retry after `Retry-After` seconds",
};

/** An example problem: a real answer of the server (its title and status follow from the code). */
export interface ProblemExample {
  code: ErrorCode;
  detail: string;
  errors?: FieldError[];
}

/** What each status's example problem says unless a route gives its own. */
const EXAMPLES: Record<number, ProblemExample> = {
  400: { code: "invalid_request", detail: "request does not match the schema", errors: [{ path: "feature_names", message: "required" }] },
  401: { code: "unauthenticated", detail: "a valid API key is required (X-API-Key or Authorization: Bearer)" },
  403: { code: "forbidden", detail: "this API key lacks the write scope" },
  404: { code: "not_found", detail: 'unknown feature(s): "user_agee"', errors: [{ path: "feature_names[0]", message: 'unknown feature "user_agee"' }] },
  409: {
    code: "conflict",
    detail: "user_lifetime_value@1 exists with a different definition (dtype float64 -> float32); register a new version to change it",
  },
  413: { code: "payload_too_large", detail: "request body is over the 33554432-byte limit" },
  429: { code: "rate_limited", detail: "this API key is over its rate limit of 100 requests per 1000 ms; retry after 1 s" },
  500: { code: "internal", detail: "an internal error occurred; quote the request id when reporting it" },
  503: { code: "unavailable", detail: "the database is unavailable; try again shortly" },
};
const EXAMPLE_REQUEST_ID = "6f1d3c52-8a4e-4b1f-9c2d-7e5a0b9f4d13";

const RETRY_AFTER = {
  "Retry-After": { description: "Seconds to wait before retrying", schema: { type: "integer" as const, minimum: 1 } },
};

/** Statuses every API route can answer with a problem. */
type CommonProblemStatus = 401 | 403 | 429 | 500 | 503;

/** One problem response of the document. */
interface ProblemResponse {
  description: string;
  headers?: typeof RETRY_AFTER;
  content: { "application/problem+json": { schema: typeof Problem; example?: unknown } };
}

/** Problem responses for the given statuses, plus 401/403/429/500/503 that every API route can return. */
export function problems<S extends number>(...statuses: S[]): Record<S | CommonProblemStatus, ProblemResponse> {
  return problemsFor({}, ...statuses);
}

/** {@link problems}, with this route's own examples for some statuses (what it really answers). */
export function problemsFor<S extends number>(examples: Partial<Record<number, ProblemExample>>, ...statuses: S[]): Record<S | CommonProblemStatus, ProblemResponse> {
  const all = [...new Set<number>([...statuses, 401, 403, 429, 500, 503])].sort();
  return Object.fromEntries(
    all.map((s) => [
      s,
      {
        description: DESCRIPTIONS[s] ?? Object.values(ERROR_CODES).find((e) => e.status === s)?.title ?? "Error",
        ...(s === 429 || s === 503 ? { headers: RETRY_AFTER } : {}),
        content: { "application/problem+json": { schema: Problem, ...example(examples[s] ?? EXAMPLES[s]) } },
      },
    ]),
  ) as Record<S | CommonProblemStatus, ProblemResponse>;
}

function example(e: ProblemExample | undefined) {
  return e ? { example: problemBody(e.code, e.detail, EXAMPLE_REQUEST_ID, e.errors) } : {};
}

/** Security requirement of every /api/v1 route. */
export const security: Record<string, string[]>[] = [{ ApiKeyHeader: [] }, { BearerKey: [] }];
