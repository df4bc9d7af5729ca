import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { AppError } from "../../errors.ts";
import type { BulkLane } from "../../lane/pool.ts";
import { definitionJson } from "../../serving/register.ts";
import type { AppEnv } from "../env.ts";
import { mount, parseBody, requireScope } from "../route.ts";
import { DefinitionResponse, RegisterBody } from "../../schemas.ts";
import { problemsFor, security } from "./common.ts";

/**
 * OpenAPI links from a registered definition to the operations that use it, so stateful
 * clients and fuzzers (schemathesis) can chain register -> write -> read with the real name.
 * `x-schemathesis.merge_body: false`: the linked body is sent as written, not merged into a
 * generated one.
 */
const FEATURE_NAME = "$response.body#/feature/name";
const ENTITY_TYPE = "$response.body#/feature/entity_type";
const exact = { "x-schemathesis": { merge_body: false } };
export const registeredLinks = {
  GetRegisteredFeature: {
    operationId: "getFeature",
    parameters: { "path.name": FEATURE_NAME },
    description: "Every version of the feature just registered",
  },
  ListFeaturesOfItsEntityType: {
    operationId: "listFeatures",
    parameters: { "query.entity_type": ENTITY_TYPE },
    description: "The features of the registered feature's entity type",
  },
  WriteRegisteredFeature: {
    operationId: "writeFeatures",
    requestBody: { entity_type: ENTITY_TYPE, records: [{ entity_id: "linked_entity", features: { [FEATURE_NAME]: 1 } }] },
    description: "Write a value of the registered feature (valid for numeric dtypes; others answer 400)",
    ...exact,
  },
  ReadRegisteredFeatureOnline: {
    operationId: "getOnlineFeatures",
    requestBody: { entity_id: "linked_entity", feature_names: [FEATURE_NAME] },
    description: "Read the registered feature online",
    ...exact,
  },
  ReadRegisteredFeatureAsOf: {
    operationId: "getBatchFeatures",
    requestBody: { entity_ids: ["linked_entity"], feature_names: [FEATURE_NAME], timestamp: "2030-01-01T00:00:00Z" },
    description: "Read the registered feature point-in-time",
    ...exact,
  },
};

export const registerRoute = createRoute({
  method: "post",
  path: "/api/v1/features/register",
  operationId: "registerFeature",
  tags: ["registry"],
  summary: "Register a feature definition (admin)",
  description:
    "201 when new; 200 when it exists with the same dtype, entity_type and ttl_hours (description, owner and tags are replaced); 409 when name@version exists with a different dtype, entity_type or ttl_hours, or the entity_type differs from the name's other versions. Runs in the bulk lane: when it is full, 503 `unavailable` with `Retry-After`.",
  security,
  request: { body: { required: true, content: { "application/json": { schema: RegisterBody } } } },
  responses: {
    200: { description: "Already registered (metadata replaced)", content: { "application/json": { schema: DefinitionResponse } }, links: registeredLinks },
    201: { description: "Registered", content: { "application/json": { schema: DefinitionResponse } }, links: registeredLinks },
    ...problemsFor({ 400: { code: "invalid_request", detail: "request does not match the schema", errors: [{ path: "dtype", message: "required" }] } }, 400, 409, 413),
  },
});

/** The store transaction runs in the bulk lane (src/lane): a wait for the write lock never holds this thread. */
export function mountRegister(app: OpenAPIHono<AppEnv>, lane: BulkLane): void {
  mount(app, registerRoute, async (c) => {
    const { tenant } = requireScope(c, "admin");
    const body = await parseBody(c, RegisterBody);
    const { outcomes } = await lane.register(tenant, { what: "features", items: [{ input: body }] });
    const o = outcomes[0];
    if (!o || o.status === "conflict" || o.status === "invalid" || !o.definition) {
      throw new AppError("conflict", o?.reason ?? "definition conflicts with the registry");
    }
    return c.json({ feature: definitionJson(o.definition) }, o.status === "new" ? 201 : 200);
  });
}
