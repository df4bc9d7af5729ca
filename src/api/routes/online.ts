import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import type { Deps } from "../../serving/deps.ts";
import { lookupOnline } from "../../serving/online.ts";
import type { AppEnv } from "../env.ts";
import { exclusive, mount, readJson, requireScope, validate } from "../route.ts";
import { OnlineBody, OnlineMultiBody, OnlineResponse, OnlineSingleBody, onlineExamples } from "../../schemas.ts";
import { problems, security } from "./common.ts";
import { OnlineRowsBody, OnlineRowsResponse, OnlineServiceMultiBody, OnlineServiceSingleBody } from "../catalog-schemas.ts";
import { onlineByService } from "./service-forms.ts";

export const onlineRoute = createRoute({
  method: "post",
  path: "/api/v1/features/online",
  operationId: "getOnlineFeatures",
  tags: ["values"],
  summary: "Latest feature values for one or many entities (read)",
  description:
    "`entity_id` answers one result object; `entity_ids` answers `{results: [...]}` in request order. Every feature of a request must share one entity type. Status per value: `present`, `not_found` (never written) or `expired` (event_time <= now - ttl_hours).",
  security,
  request: { body: { required: true, content: { "application/json": { schema: z.union([OnlineBody, OnlineServiceSingleBody, OnlineServiceMultiBody, OnlineRowsBody]) } } } },
  responses: {
    200: { description: "Values with per-feature metadata", content: { "application/json": { schema: z.union([OnlineResponse, OnlineRowsResponse]), examples: onlineExamples } } },
    ...problems(400, 404, 413),
  },
});

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function mountOnline(app: OpenAPIHono<AppEnv>, deps: Deps): void {
  mount(app, onlineRoute, async (c) => {
    const { tenant } = requireScope(c, "read");
    const raw = await readJson(c);
    exclusive(raw, "entity_id", ["entity_ids"], "`entity_id` (one entity) or `entity_ids` (many)");
    exclusive(raw, "entity_rows", ["entity_id", "entity_ids"], "`entity_rows` (an entity per entity type) or `entity_id`/`entity_ids`");
    const byService = await onlineByService(deps, tenant, raw);
    if (byService) return c.json(byService, 200);
    if (isObject(raw) && "entity_ids" in raw) {
      const body = validate(OnlineMultiBody, raw);
      const results = await lookupOnline(deps, tenant, body.entity_ids, body.feature_names);
      return c.json({ results }, 200);
    }
    const body = validate(OnlineSingleBody, raw);
    const [result] = await lookupOnline(deps, tenant, [body.entity_id], body.feature_names);
    return c.json(result, 200);
  });
}
