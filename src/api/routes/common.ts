import { ERROR_CODES } from "../../errors.ts";
import { Problem } from "../schemas.ts";

const DESCRIPTIONS: Record<number, string> = {
  400: "Malformed body, wrong type, missing or unknown field, list over its limit, invalid value",
  401: "No API key, or an unknown, revoked or expired one",
  403: "The API key lacks the scope this operation needs",
  404: "Unknown feature(s)",
  409: "Conflicts with an existing definition",
  413: "Body over the configured limit",
  500: "Internal error (never echoes internal messages)",
  503: "A store is unavailable, or the server is shutting down",
};

/** Problem responses for the given statuses, plus 401/403/500/503 that every API route can return. */
export function problems(...statuses: number[]) {
  const all = [...new Set([...statuses, 401, 403, 500, 503])].sort();
  return Object.fromEntries(
    all.map((s) => [
      s,
      {
        description: DESCRIPTIONS[s] ?? Object.values(ERROR_CODES).find((e) => e.status === s)?.title ?? "Error",
        content: { "application/problem+json": { schema: Problem } },
      },
    ]),
  );
}

/** Security requirement of every /api/v1 route. */
export const security: Record<string, string[]>[] = [{ ApiKeyHeader: [] }, { BearerKey: [] }];
