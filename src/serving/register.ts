/**
 * Registering feature definitions, for the HTTP route (one at a time) and `register FILE.yaml`
 * (many, all or nothing). The decision is made on the tenant's current definitions inside the
 * database's register transaction, so concurrent registrations cannot interleave.
 */
import type { z } from "@hono/zod-openapi";
import type { RegisterBody } from "../schemas.ts";
import type { DefinitionRow, MetadataUpdate, NewDefinition, Stores } from "../store/types.ts";
import { dbCall, type Deps } from "./deps.ts";

/** A definition as submitted (already schema-valid: the request schema's type). */
export type RegisterInput = z.output<typeof RegisterBody>;

/** What happened (or would happen) to one definition. */
export type RegisterStatus = "new" | "unchanged" | "updated" | "conflict" | "invalid";

/** Per-definition outcome; `definition` is set for new, unchanged and updated. */
export interface RegisterOutcome {
  name: string;
  version: number;
  status: RegisterStatus;
  reason?: string;
  definition?: DefinitionRow;
}

/** An input, or a definition already found invalid by schema validation. */
export type RegisterItem = { input: RegisterInput } | { invalid: { name: string; version: number; reason: string } };

function canonicalTags(t: Record<string, string>): string {
  return JSON.stringify(Object.keys(t).sort().map((k) => [k, t[k]]));
}

/** Decides the outcome of every item against the tenant's current definitions (pure). */
export function decideRegistration(tenant: string, items: readonly RegisterItem[], current: readonly DefinitionRow[], now: number) {
  const working = new Map<string, DefinitionRow>(current.map((d) => [`${d.name}@${d.version}`, d]));
  const entityTypeOf = new Map<string, string>();
  for (const d of current) entityTypeOf.set(d.name, d.entity_type);
  const outcomes: RegisterOutcome[] = [];
  const inserts = new Map<string, NewDefinition>();
  const updates = new Map<number, MetadataUpdate>();

  for (const item of items) {
    if ("invalid" in item) {
      outcomes.push({ ...item.invalid, status: "invalid" });
      continue;
    }
    const b = item.input;
    const key = `${b.name}@${b.version}`;
    const ttl = b.ttl_hours ?? null;
    const meta = { description: b.description ?? null, owner: b.owner ?? null, tags: b.tags ?? {} };
    const existing = working.get(key);
    const nameType = entityTypeOf.get(b.name);
    if (existing) {
      const diffs: string[] = [];
      if (existing.dtype !== b.dtype) diffs.push(`dtype ${existing.dtype} -> ${b.dtype}`);
      if (existing.entity_type !== b.entity_type) diffs.push(`entity_type ${existing.entity_type} -> ${b.entity_type}`);
      if (existing.ttl_hours !== ttl) diffs.push(`ttl_hours ${existing.ttl_hours ?? "none"} -> ${ttl ?? "none"}`);
      if (diffs.length > 0) {
        outcomes.push({ name: b.name, version: b.version, status: "conflict", reason: `${key} exists with a different definition (${diffs.join(", ")}); register a new version to change it` });
        continue;
      }
      const same =
        existing.description === meta.description && existing.owner === meta.owner && canonicalTags(existing.tags) === canonicalTags(meta.tags);
      if (same) {
        outcomes.push({ name: b.name, version: b.version, status: "unchanged", definition: existing });
        continue;
      }
      const updated: DefinitionRow = { ...existing, ...meta, updated_at: now };
      working.set(key, updated);
      const pending = inserts.get(key);
      if (pending) Object.assign(pending, meta);
      else updates.set(existing.id, { id: existing.id, ...meta, updated_at: now });
      outcomes.push({ name: b.name, version: b.version, status: "updated", definition: updated });
      continue;
    }
    if (nameType !== undefined && nameType !== b.entity_type) {
      outcomes.push({
        name: b.name,
        version: b.version,
        status: "conflict",
        reason: `other versions of ${b.name} have entity_type ${nameType}; all versions of a name share one entity type`,
      });
      continue;
    }
    const def: NewDefinition = {
      tenant, name: b.name, version: b.version, dtype: b.dtype, entity_type: b.entity_type, ttl_hours: ttl,
      ...meta, created_at: now, updated_at: now,
    };
    inserts.set(key, def);
    working.set(key, { id: -1, ...def });
    entityTypeOf.set(b.name, b.entity_type);
    outcomes.push({ name: b.name, version: b.version, status: "new", definition: { id: -1, ...def } });
  }
  const ok = outcomes.every((o) => o.status !== "conflict" && o.status !== "invalid");
  return { outcomes, ok, plan: { inserts: [...inserts.values()], updates: [...updates.values()] } };
}

/**
 * Registers items for a tenant, all or nothing: applied only when none is in conflict or
 * invalid and `dryRun` is false. Refreshes this process's registry snapshot after a change.
 */
export async function registerFeatures(deps: Pick<Deps, "registry" | "clock" | "config" | "log"> & { stores: Pick<Stores, "registry"> }, tenant: string, items: readonly RegisterItem[], dryRun = false): Promise<{ outcomes: RegisterOutcome[]; ok: boolean }> {
  const now = deps.clock.now();
  const { result, inserted } = await dbCall(deps, "register", () =>
    deps.stores.registry.registerDefinitions(tenant, (current) => {
      const d = decideRegistration(tenant, items, current, now);
      return { plan: d.plan, apply: d.ok && !dryRun, result: d };
    }),
  );
  const ids = new Map(inserted.map((d) => [`${d.name}@${d.version}`, d.id]));
  for (const o of result.outcomes) {
    if (o.definition && o.definition.id === -1) o.definition = { ...o.definition, id: ids.get(`${o.name}@${o.version}`) ?? -1 };
  }
  if (inserted.length > 0 || result.plan.updates.length > 0) {
    if (result.ok && !dryRun) await dbCall(deps, "registry reload", () => deps.registry.reload(tenant));
  }
  return { outcomes: result.outcomes, ok: result.ok };
}

/** The API's DEFINITION object. */
export function definitionJson(d: DefinitionRow) {
  return {
    name: d.name,
    version: d.version,
    dtype: d.dtype,
    entity_type: d.entity_type,
    ttl_hours: d.ttl_hours,
    description: d.description,
    owner: d.owner,
    tags: d.tags,
    created_at: new Date(d.created_at).toISOString(),
    updated_at: new Date(d.updated_at).toISOString(),
  };
}
