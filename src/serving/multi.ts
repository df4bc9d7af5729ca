/**
 * Online lookup of features that may span entity types (a feature service such as
 * `user_stats:*` + `merchant_stats:risk_score`, or Feast's `get-online-features`): each row
 * names one entity id per entity type; each entity type's keys are read in one cache call.
 */
import type { z } from "@hono/zod-openapi";
import type { OnlineRowsResponse } from "../catalog-schemas.ts";
import { AppError, type FieldError } from "../errors.ts";
import { compositeEntityId } from "../registry/names.ts";
import type { Definition } from "../registry/snapshot.ts";
import type { ValueKey } from "../store/types.ts";
import type { Deps } from "./deps.ts";
import { renderResult, serveValue, type ServedValue } from "./features.ts";
import { readLatest } from "./online.ts";

/**
 * Served values, `[row][feature]` in the order of `defs`. `idsOf(entityType)` gives that type's
 * entity id per row (`rows` of them), or undefined when the request names none (a 400 naming
 * `missing`'s answer).
 */
export async function lookupAcrossTypes(
  deps: Deps,
  tenant: string,
  defs: readonly Definition[],
  rows: number,
  idsOf: (entityType: string) => readonly string[] | undefined,
  missing: (entityType: string, feature: Definition) => AppError,
): Promise<ServedValue[][]> {
  const byType = new Map<string, number[]>();
  defs.forEach((d, f) => {
    const list = byType.get(d.entity_type);
    if (list) list.push(f);
    else byType.set(d.entity_type, [f]);
  });
  const out: ServedValue[][] = Array.from({ length: rows }, () => new Array<ServedValue>(defs.length));
  const now = deps.clock.now();
  const memo = deps.stores.online.capabilities.stableRows;
  const counts = { present: 0, not_found: 0, expired: 0 };
  // every entity type is checked before anything is read (a 400 must not follow a partial read)
  for (const [entityType, fs] of byType) if (idsOf(entityType) === undefined) throw missing(entityType, defs[fs[0] as number] as Definition);
  const reads = [...byType].map(async ([entityType, fs]) => {
    const ids = idsOf(entityType) as readonly string[];
    const keys: ValueKey[] = new Array(rows * fs.length);
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < fs.length; j++) keys[r * fs.length + j] = { feature_id: (defs[fs[j] as number] as Definition).id, entity_id: ids[r] as string };
    }
    const found = await readLatest(deps, tenant, entityType, keys);
    const age = deps.metrics.servedValueAge.labels({ entity_type: entityType });
    for (let r = 0; r < rows; r++) {
      let lastObserved = Number.NaN;
      for (let j = 0; j < fs.length; j++) {
        const f = fs[j] as number;
        const row = found[r * fs.length + j];
        const s = serveValue(defs[f] as Definition, row, now, memo);
        counts[s.status]++;
        if (s.status === "present" && row && row.event_time !== lastObserved) {
          lastObserved = row.event_time;
          age.observe(Math.max(0, (now - row.event_time) / 1000));
        }
        (out[r] as ServedValue[])[f] = s;
      }
    }
  });
  await Promise.all(reads);
  for (const [status, n] of Object.entries(counts)) if (n > 0) deps.metrics.lookups.inc({ status }, n);
  return out;
}

/** An entity as an `entity_rows` request names it: its id, or {join key: value} for several keys. */
export type EntityValue = string | Record<string, string>;

/** One result of an `entity_rows` online request (the response schema's type). */
export type OnlineRowResult = z.output<typeof OnlineRowsResponse>["results"][number];

/**
 * `entity_rows` (entity type -> entity per row) with features of any entity types. An entity
 * type with several join keys is named by an object of them (or by its stored id, the JSON
 * array of the values in join-key order).
 */
export async function lookupOnlineRows(
  deps: Deps,
  tenant: string,
  entityRows: readonly Record<string, EntityValue>[],
  refs: readonly string[],
  defs: readonly Definition[],
): Promise<OnlineRowResult[]> {
  const snapshot = deps.registry.current;
  const errors: FieldError[] = [];
  const idOf = (row: Record<string, EntityValue>, r: number, type: string): string | undefined => {
    const v = row[type];
    if (v === undefined || typeof v === "string") return v;
    const keys = snapshot.joinKeys(tenant, type);
    const extra = Object.keys(v).filter((k) => !keys.includes(k));
    const missing = keys.filter((k) => v[k] === undefined);
    if (extra.length > 0 || missing.length > 0) {
      errors.push({ path: `entity_rows[${r}].${type}`, message: `${type} is named by the join keys ${keys.join(", ")}` });
      return "";
    }
    return compositeEntityId(keys.map((k) => v[k] as string));
  };
  const served = await lookupAcrossTypes(
    deps,
    tenant,
    defs,
    entityRows.length,
    (type) => {
      const ids = entityRows.map((row, r) => idOf(row, r, type));
      if (errors.length > 0) throw new AppError("invalid_request", "invalid entity key(s)", { errors: errors.slice(0, 100) });
      return ids.every((id) => id !== undefined) ? (ids as string[]) : undefined;
    },
    (type, def) => {
      const i = entityRows.findIndex((r) => r[type] === undefined);
      return new AppError("invalid_request", `entity_rows[${i}] names no ${type} id (needed by ${def.name}@${def.version})`, {
        errors: [{ path: `entity_rows[${i}]`, message: `missing entity type ${type}` }],
      });
    },
  );
  return entityRows.map((entities, r) => ({ entities, ...renderResult(refs, served[r] as ServedValue[]) }));
}
