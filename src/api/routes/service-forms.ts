/**
 * The request forms that name a `feature_service` instead of `feature_names`, and online
 * `entity_rows` (one entity id per entity type) for features spanning entity types. The online
 * and batch routes hand their body here first; `undefined` means "the contract's own form".
 */
import { AppError } from "../../errors.ts";
import { serviceFeatureNames } from "../../serving/catalog.ts";
import type { Deps } from "../../serving/deps.ts";
import { resolveFeatureSet } from "../../serving/features.ts";
import { lookupOnlineRows, type OnlineRowResult } from "../../serving/multi.ts";
import { lookupOnline, type OnlineResult } from "../../serving/online.ts";
import { exclusive, validate } from "../route.ts";
import { BatchServiceRowsBody, BatchServiceSharedBody, OnlineRowsBody, OnlineServiceMultiBody, OnlineServiceSingleBody } from "../../catalog-schemas.ts";

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** Answers an online body in a service or `entity_rows` form; undefined for the other forms. */
export async function onlineByService(deps: Deps, tenant: string, raw: unknown): Promise<OnlineResult | { results: OnlineResult[] } | { results: OnlineRowResult[] } | undefined> {
  if (!isObject(raw)) return undefined;
  if ("entity_rows" in raw) {
    const body = validate(OnlineRowsBody, raw);
    if ((body.feature_names === undefined) === (body.feature_service === undefined)) {
      throw new AppError("invalid_request", "give exactly one of feature_names and feature_service", {
        errors: [{ path: body.feature_service === undefined ? "feature_names" : "feature_service", message: "exactly one of feature_names and feature_service is required" }],
      });
    }
    const names = body.feature_names ?? serviceFeatureNames(deps, tenant, body.feature_service as string);
    const { refs, defs } = resolveFeatureSet(deps.registry.current, tenant, names, body.feature_names ? "feature_names" : "feature_service");
    return { results: await lookupOnlineRows(deps, tenant, body.entity_rows, refs, defs) };
  }
  if (!("feature_service" in raw)) return undefined;
  exclusive(raw, "feature_service", ["feature_names"], "`feature_names` or `feature_service`");
  if ("entity_ids" in raw) {
    const body = validate(OnlineServiceMultiBody, raw);
    return { results: await lookupOnline(deps, tenant, body.entity_ids, oneType(deps, tenant, body.feature_service)) };
  }
  const body = validate(OnlineServiceSingleBody, raw);
  const [result] = await lookupOnline(deps, tenant, [body.entity_id], oneType(deps, tenant, body.feature_service));
  return result;
}

/** A service's references, when they share one entity type (else a 400 pointing at `entity_rows`). */
function oneType(deps: Pick<Deps, "registry">, tenant: string, service: string): string[] {
  const names = serviceFeatureNames(deps, tenant, service);
  const { defs } = resolveFeatureSet(deps.registry.current, tenant, names, "feature_service");
  const types = [...new Set(defs.map((d) => d.entity_type))];
  if (types.length > 1) {
    throw new AppError("invalid_request", `feature service ${service} spans entity types ${types.join(", ")}: name one id per type with entity_rows: [{${types.map((t) => `"${t}": ID`).join(", ")}}]`, {
      errors: [{ path: "feature_service", message: `spans entity types ${types.join(", ")}` }],
    });
  }
  return names;
}

/**
 * A batch body in a service form as the contract's form (`feature_names` in place of
 * `feature_service`); the body unchanged otherwise. A service spanning entity types is a 400:
 * batch rows name one entity id.
 */
export function batchByService(deps: Pick<Deps, "registry">, tenant: string, raw: unknown): unknown {
  if (!isObject(raw) || !("feature_service" in raw)) return raw;
  exclusive(raw, "rows", ["entity_ids", "timestamp"], "`rows` (a time per row) or `entity_ids` with `timestamp` (one time for all)");
  exclusive(raw, "feature_service", ["feature_names"], "`feature_names` or `feature_service`");
  const body = "rows" in raw ? validate(BatchServiceRowsBody, raw) : validate(BatchServiceSharedBody, raw);
  const { feature_service, ...rest } = body;
  return { ...rest, feature_names: oneType(deps, tenant, feature_service) };
}
