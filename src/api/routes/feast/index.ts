/**
 * Feast's feature-server HTTP API beside ours, under `/api/v1/feast` (Feast's `remote` online
 * store takes that as its `path`): same tenants, API keys, scopes, limits and metrics as every
 * /api/v1 route. Bodies follow Feast's pydantic models, which ignore unknown fields: so do these.
 */
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import type { WriteForms } from "../../../lane/jobs.ts";
import type { BulkLane } from "../../../lane/pool.ts";
import { dbCall, type Deps } from "../../../serving/deps.ts";
import { feastOnline, feastPushGroups, feastWriteGroups } from "../../../serving/feast.ts";
import type { AppEnv } from "../../env.ts";
import { mount, parseBody, requireScope, validate } from "../../route.ts";
import { LIMITS } from "../../../schemas.ts";
import { problems, security } from "../common.ts";

/** Where the Feast routes live. */
export const FEAST_PREFIX = "/api/v1/feast";

const EntityValue = z.union([z.string(), z.number()]);
const FeastOnlineBody = z
  .object({
    entities: z.record(z.string(), z.array(EntityValue).max(LIMITS.onlineIds)).openapi({ description: "join key -> one value per entity row", example: { user_id: ["u1", "u2"] } }),
    features: z.array(z.string()).max(LIMITS.features).optional().openapi({ description: "`view:feature` (or our plain `feature`, `feature@N`)", example: ["user_stats:age"] }),
    feature_service: z.string().optional().openapi({ description: "a feature service, used instead of `features` when given" }),
    full_feature_names: z.boolean().optional().openapi({ description: "name output columns `view__feature`" }),
  })
  .openapi("FeastGetOnlineFeaturesRequest");
const FeastOnlineResponse = z
  .object({
    metadata: z.object({ feature_names: z.array(z.string()) }),
    results: z.array(
      z.object({
        values: z.array(z.unknown()),
        statuses: z.array(z.enum(["PRESENT", "NOT_FOUND", "OUTSIDE_MAX_AGE"])),
        event_timestamps: z.array(z.string()),
      }),
    ),
  })
  .openapi("FeastOnlineFeaturesResponse", {
    description: "one column per entity key, then per feature; `results[i]` is the column `metadata.feature_names[i]`",
    example: {
      metadata: { feature_names: ["driver_id", "conv_rate", "trips"] },
      results: [
        { values: [1001, 1002], statuses: ["PRESENT", "PRESENT"], event_timestamps: ["1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z"] },
        { values: [0.5, null], statuses: ["PRESENT", "NOT_FOUND"], event_timestamps: ["2024-01-15T09:58:00Z", "1970-01-01T00:00:00Z"] },
        { values: [null, null], statuses: ["OUTSIDE_MAX_AGE", "NOT_FOUND"], event_timestamps: ["2024-01-15T09:58:00Z", "1970-01-01T00:00:00Z"] },
      ],
    },
  });
const Frame = z.record(z.string(), z.array(z.unknown()).max(LIMITS.writeRecords)).openapi({
  description: "column -> values: the view's join key, its features by name, `event_timestamp` (ISO 8601, no offset = UTC), `created` (ignored)",
  example: { user_id: ["u1"], age: [31], event_timestamp: ["2024-01-15T09:58:00"] },
});
const FeastWriteBody = z.object({ feature_view_name: z.string(), df: Frame }).openapi("FeastWriteToOnlineStoreRequest");
const FeastPushBody = z
  .object({ push_source_name: z.string(), df: Frame, to: z.enum(["online", "offline", "online_and_offline"]).default("online") })
  .openapi("FeastPushRequest");

const tags = ["feast"];
const onlineRoute = createRoute({
  method: "post",
  path: `${FEAST_PREFIX}/get-online-features`,
  operationId: "feastGetOnlineFeatures",
  tags,
  summary: "Feast: latest feature values, column-oriented (read)",
  description:
    "Feast's `POST /get-online-features`. Statuses: PRESENT, NOT_FOUND (never written) and OUTSIDE_MAX_AGE (our `expired`: older than the feature's ttl_hours, value null; Feast's own server never answers it online). Entity key columns come first, PRESENT, with timestamp 1970-01-01T00:00:00Z, as Feast answers them.",
  security,
  request: { body: { required: true, content: { "application/json": { schema: FeastOnlineBody } } } },
  responses: { 200: { description: "One column per entity key and feature", content: { "application/json": { schema: FeastOnlineResponse } } }, ...problems(400, 404, 413) },
});
const writeRoute = createRoute({
  method: "post",
  path: `${FEAST_PREFIX}/write-to-online-store`,
  operationId: "feastWriteToOnlineStore",
  tags,
  summary: "Feast: write a feature view's columnar frame (write)",
  description:
    "Feast's `POST /write-to-online-store` (what Feast's `remote` online store sends for `write_to_online_store`). All or nothing per view; a null cell writes nothing. Runs in the bulk lane, as `write` does: when it is full, 503 `unavailable` with `Retry-After`.",
  security,
  request: { body: { required: true, content: { "application/json": { schema: FeastWriteBody } } } },
  responses: { 200: { description: "Written (body `null`, as Feast answers)", content: { "application/json": { schema: z.null(), examples: { written: { value: null } } } } }, ...problems(400, 404, 413) },
});
const pushRoute = createRoute({
  method: "post",
  path: `${FEAST_PREFIX}/push`,
  operationId: "feastPush",
  tags,
  summary: "Feast: push a frame through a push source (write)",
  description: "Writes through every feature view whose `push_source` is `push_source_name`. Every write keeps history and the online value together: `to` is `online` or `online_and_offline`; `offline` alone is a 400. Runs in the bulk lane, as `write` does: when it is full, 503 `unavailable` with `Retry-After`.",
  security,
  request: { body: { required: true, content: { "application/json": { schema: FeastPushBody } } } },
  responses: { 200: { description: "Written (empty body, as Feast answers)" }, ...problems(400, 404, 413) },
});
const healthRoute = createRoute({
  method: "get",
  path: `${FEAST_PREFIX}/health`,
  operationId: "feastHealth",
  tags,
  summary: "Feast: 200 while the registry database answers (read)",
  security,
  responses: { 200: { description: "Healthy (empty body, as Feast answers)" }, ...problems() },
});

/** Feast's write bodies as the bulk lane's write forms: decoded, validated and stored on a lane thread. */
export const feastWriteForms: WriteForms = {
  "feast-write": (deps, tenant, raw) => {
    const body = validate(FeastWriteBody, raw);
    return feastWriteGroups(deps, tenant, body.feature_view_name, body.df, LIMITS.writeRecords);
  },
  "feast-push": (deps, tenant, raw) => {
    const body = validate(FeastPushBody, raw);
    return feastPushGroups(deps, tenant, body.push_source_name, body.df, body.to, LIMITS.writeRecords);
  },
};

/** The writes run in the bulk lane (`feastWriteForms`), like the native write: same admission, same online half. */
export function mountFeast(app: OpenAPIHono<AppEnv>, deps: Deps, lane: BulkLane): void {
  mount(app, onlineRoute, async (c) => {
    const { tenant } = requireScope(c, "read");
    const body = await parseBody(c, FeastOnlineBody);
    return c.json(await feastOnline(deps, tenant, body, LIMITS.onlineIds), 200);
  });
  mount(app, writeRoute, async (c) => {
    const { tenant } = requireScope(c, "write");
    await lane.write({ tenant, readBody: () => c.req.arrayBuffer(), form: "feast-write" });
    return c.json(null, 200);
  });
  mount(app, pushRoute, async (c) => {
    const { tenant } = requireScope(c, "write");
    await lane.write({ tenant, readBody: () => c.req.arrayBuffer(), form: "feast-push" });
    return c.body(null, 200);
  });
  mount(app, healthRoute, async (c) => {
    requireScope(c, "read");
    await dbCall(deps, "health", () => deps.stores.registry.ping());
    return c.body(null, 200);
  });
}
