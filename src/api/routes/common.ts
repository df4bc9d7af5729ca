import { ERROR_CODES } from "../../errors.ts";
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
  503: "A store is unavailable, the server is at capacity (load shedding) or past the request deadline, or shutting down; retry after `Retry-After` seconds",
};

const RETRY_AFTER = {
  "Retry-After": { description: "Seconds to wait before retrying", schema: { type: "integer" as const, minimum: 1 } },
};

/** Problem responses for the given statuses, plus 401/403/429/500/503 that every API route can return. */
export function problems(...statuses: number[]) {
  const all = [...new Set([...statuses, 401, 403, 429, 500, 503])].sort();
  return Object.fromEntries(
    all.map((s) => [
      s,
      {
        description: DESCRIPTIONS[s] ?? Object.values(ERROR_CODES).find((e) => e.status === s)?.title ?? "Error",
        ...(s === 429 || s === 503 ? { headers: RETRY_AFTER } : {}),
        content: { "application/problem+json": { schema: Problem } },
      },
    ]),
  );
}

/** Security requirement of every /api/v1 route. */
export const security: Record<string, string[]>[] = [{ ApiKeyHeader: [] }, { BearerKey: [] }];
