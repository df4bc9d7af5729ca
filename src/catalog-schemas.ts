/**
 * Schemas of feature views and feature services, and of the request forms that name a
 * `feature_service` instead of `feature_names`: they validate requests and generate the
 * OpenAPI document, as src/schemas.ts does for the contract's routes. Hono-free: serving types
 * are derived from them, and the CLI validates with them too.
 */
import { z } from "@hono/zod-openapi";
import { PLAIN_REF_PATTERN } from "./registry/names.ts";
import { EntityId, EntityType, FeatureRef, LIMITS, Name, RegisterBody, Timestamp } from "./schemas.ts";

const PlainRef = z.string().regex(new RegExp(PLAIN_REF_PATTERN), "must be `name` or `name@N`").openapi({ example: "user_age" });
const ServiceMember = z
  .string()
  .refine((v) => FeatureRef.safeParse(v).success || /^[a-z][a-z0-9_]{0,127}:\*$/.test(v), "must be `name`, `name@N`, `view:name`, `view:name@N` or `view:*`")
  .openapi({ example: "user_stats:*" });
/** A service reference in a request: `name` (highest version) or `name@N`. */
export const ServiceRef = PlainRef.openapi({ description: "a feature service: `name` (highest version) or `name@N`", example: "fraud_model" });
const Meta = { description: RegisterBody.shape.description, owner: RegisterBody.shape.owner, tags: RegisterBody.shape.tags };
const Version = RegisterBody.shape.version;
const OutTime = z.string().openapi({ format: "date-time" });

export const ViewBody = z
  .strictObject({
    name: Name,
    version: Version,
    entity_type: EntityType,
    join_keys: z
      .array(Name)
      .min(1)
      .max(8)
      .refine((k) => new Set(k).size === k.length, "join keys must be distinct")
      .optional()
      .openapi({ description: "the key column(s) clients name the entity by (default: the entity type); several columns make a composite key" }),
    features: z.array(PlainRef).min(1).max(LIMITS.features).openapi({ description: "features of `entity_type`: `name` (follows the highest version) or `name@N` (pinned)" }),
    push_source: Name.optional().openapi({ description: "push source name that Feast's `POST /push` writes this view through" }),
    ...Meta,
  })
  .openapi("FeatureViewBody", { example: { name: "user_stats", version: 1, entity_type: "user", join_keys: ["user_id"], features: ["user_age", "user_lifetime_value"] } });

export const ServiceBody = z
  .strictObject({
    name: Name,
    version: Version,
    features: z.array(ServiceMember).min(1).max(LIMITS.features).openapi({ description: "feature references, possibly of several entity types; `view:*` is every feature of a view" }),
    ...Meta,
  })
  .openapi("FeatureServiceBody", { example: { name: "fraud_model", version: 1, features: ["user_stats:*", "merchant_stats:risk_score"] } });

const T0 = "2024-01-15T09:58:00.000Z";
const viewExample = {
  name: "user_stats", version: 1, entity_type: "user", join_keys: ["user_id"], features: ["user_age", "user_lifetime_value"], push_source: null,
  description: "profile features of a user", owner: "ml-platform", tags: { team: "ml" }, created_at: T0, updated_at: T0,
};
const serviceExample = {
  name: "fraud_model", version: 1, features: ["user_stats:*", "merchant_stats:risk_score"], description: "features of fraud model v3", owner: "fraud", tags: {}, created_at: T0, updated_at: T0,
};
const MetaOut = { description: z.string().nullable(), owner: z.string().nullable(), tags: z.record(z.string(), z.string()), created_at: OutTime, updated_at: OutTime };
export const FeatureView = z
  .object({ name: Name, version: z.int(), entity_type: EntityType, join_keys: z.array(z.string()), features: z.array(z.string()), push_source: z.string().nullable(), ...MetaOut })
  .openapi("FeatureView");
export const FeatureService = z.object({ name: Name, version: z.int(), features: z.array(z.string()), ...MetaOut }).openapi("FeatureService");
export const ViewResponse = z.object({ feature_view: FeatureView }).openapi("FeatureViewResponse", { example: { feature_view: viewExample } });
export const ServiceResponse = z.object({ feature_service: FeatureService }).openapi("FeatureServiceResponse", { example: { feature_service: serviceExample } });
export const ViewList = z.object({ feature_views: z.array(FeatureView) }).openapi("FeatureViewList", { example: { feature_views: [viewExample] } });
export const ServiceList = z.object({ feature_services: z.array(FeatureService) }).openapi("FeatureServiceList", { example: { feature_services: [serviceExample] } });
export const ViewVersions = z.object({ name: Name, versions: z.array(FeatureView) }).openapi("FeatureViewVersions", { example: { name: "user_stats", versions: [viewExample] } });
export const ServiceVersions = z.object({ name: Name, versions: z.array(FeatureService) }).openapi("FeatureServiceVersions", { example: { name: "fraud_model", versions: [serviceExample] } });

// ---------------------------------------------------------------- requests naming a service

export const OnlineServiceSingleBody = z.strictObject({ entity_id: EntityId, feature_service: ServiceRef }).openapi("OnlineServiceSingleBody");
export const OnlineServiceMultiBody = z
  .strictObject({ entity_ids: z.array(EntityId).min(1).max(LIMITS.onlineIds), feature_service: ServiceRef })
  .openapi("OnlineServiceMultiBody");
/** One entity per entity type, for features (or a service) spanning entity types. */
export const EntityRow = z.record(EntityType, z.union([EntityId, z.record(Name, EntityId)])).openapi({
  description: "entity type -> entity id, or for an entity type with several join keys {join key: value}",
  example: { user: "user_1", merchant: "m_7", user_merchant: { user_id: "user_1", merchant_id: "m_7" } },
});
export const OnlineRowsBody = z
  .strictObject({
    entity_rows: z.array(EntityRow).min(1).max(LIMITS.onlineIds),
    feature_names: z.array(FeatureRef).min(1).max(LIMITS.features).optional(),
    feature_service: ServiceRef.optional(),
  })
  .openapi("OnlineRowsBody", { example: { entity_rows: [{ user: "user_1", merchant: "m_7" }], feature_service: "fraud_model" } });
const ValueMeta = z.object({ status: z.enum(["present", "not_found", "expired"]), event_time: OutTime.nullable() });
export const OnlineRowsResponse = z
  .object({
    results: z.array(
      z.object({ entities: z.record(z.string(), z.union([z.string(), z.record(z.string(), z.string())])), features: z.record(z.string(), z.unknown()), metadata: z.record(z.string(), ValueMeta) }),
    ),
  })
  .openapi("OnlineRowsResponse");

export const BatchServiceSharedBody = z
  .strictObject({ entity_ids: z.array(EntityId).min(1).max(LIMITS.batchRows), feature_service: ServiceRef, timestamp: Timestamp })
  .openapi("BatchServiceSharedTimeBody");
export const BatchServiceRowsBody = z
  .strictObject({ rows: z.array(z.strictObject({ entity_id: EntityId, timestamp: Timestamp })).min(1).max(LIMITS.batchRows), feature_service: ServiceRef })
  .openapi("BatchServiceRowsBody");
