/**
 * Feature views and feature services: registering them (with features, all or nothing, in one
 * transaction, over HTTP one at a time or from `register FILE.yaml`), their API form, and
 * turning a request's `feature_service` into the references it stands for.
 */
import { AppError } from "../errors.ts";
import { parseRef } from "../registry/names.ts";
import { RegistrySnapshot } from "../registry/snapshot.ts";
import type { DefinitionRow, GroupKind, GroupRow, GroupSpec, MetadataUpdate, NewGroup, Stores } from "../store/types.ts";
import { dbCall, type Deps } from "./deps.ts";
import { decideRegistration, type RegisterItem, type RegisterOutcome } from "./register.ts";

/** A view or service as submitted (already schema-valid). */
export interface GroupInput {
  kind: GroupKind;
  name: string;
  version: number;
  spec: GroupSpec;
  description?: string | undefined;
  owner?: string | undefined;
  tags?: Record<string, string> | undefined;
}

/** A group input, or one already found invalid by schema validation. */
export type GroupItem = { input: GroupInput } | { invalid: { kind: GroupKind; name: string; version: number; reason: string } };

/** Outcome of one feature, view or service. */
export interface CatalogOutcome extends RegisterOutcome {
  kind: "feature" | GroupKind;
  group?: GroupRow;
  /** for `invalid` views and services naming unknown features: each unknown reference */
  unknown?: string[];
}

const canonical = (v: unknown): string =>
  JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === "object" && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : 1))) : x,
  );

/** The stored spec of an input: a view's join keys default to its entity type. */
function normalise(g: GroupInput): GroupSpec {
  if (g.kind === "service") return { features: g.spec.features };
  const entity = g.spec.entity_type as string;
  return {
    entity_type: entity,
    join_keys: g.spec.join_keys ?? [entity],
    features: g.spec.features,
    ...(g.spec.push_source !== undefined ? { push_source: g.spec.push_source } : {}),
  };
}

/** What is wrong with a view's or service's members against `snap`, or null. */
function checkMembers(snap: RegistrySnapshot, tenant: string, g: GroupInput): { reason: string; unknown?: string[] } | null {
  const unknown: string[] = [];
  const problems: string[] = [];
  const names = new Set<string>();
  for (const ref of g.spec.features) {
    if (g.kind === "service") {
      const star = /^([a-z][a-z0-9_]{0,127}):\*$/.exec(ref);
      if (star) {
        if (!snap.group(tenant, "view", star[1] as string)) unknown.push(ref);
        continue;
      }
    }
    const r = snap.resolve(tenant, ref);
    if (r.kind === "unknown") unknown.push(ref);
    else if (r.kind === "invalid") problems.push(`${ref}: ${r.message}`);
    else if (g.kind === "view") {
      if (r.def.entity_type !== g.spec.entity_type) problems.push(`${ref} has entity type ${r.def.entity_type}, not ${g.spec.entity_type}`);
      const name = parseRef(ref)?.name ?? ref;
      if (names.has(name)) problems.push(`${name} is listed twice`);
      names.add(name);
    }
  }
  if (unknown.length > 0) return { reason: `unknown feature reference(s): ${unknown.join(", ")}`, unknown };
  if (problems.length > 0) return { reason: problems.join("; ") };
  return null;
}

/**
 * Decides features (as {@link decideRegistration}) and then views and services, in order,
 * against the tenant's current catalog plus what this registration adds (pure).
 */
export function decideCatalog(
  tenant: string,
  features: readonly RegisterItem[],
  groups: readonly GroupItem[],
  currentDefs: readonly DefinitionRow[],
  currentGroups: readonly GroupRow[],
  now: number,
) {
  const f = decideRegistration(tenant, features, currentDefs, now);
  const outcomes: CatalogOutcome[] = f.outcomes.map((o) => ({ ...o, kind: "feature" }));
  const defs: DefinitionRow[] = [...currentDefs, ...f.plan.inserts.map((d) => ({ id: -1, ...d }))];
  const working = new Map<string, GroupRow>(currentGroups.map((g) => [`${g.kind}:${g.name}@${g.version}`, g]));
  const inserts = new Map<string, NewGroup>();
  const updates = new Map<number, MetadataUpdate>();
  let snap: RegistrySnapshot | undefined;

  for (const item of groups) {
    if ("invalid" in item) {
      outcomes.push({ ...item.invalid, status: "invalid" });
      continue;
    }
    const g = item.input;
    const base = { kind: g.kind, name: g.name, version: g.version } as const;
    const key = `${g.kind}:${g.name}@${g.version}`;
    snap ??= new RegistrySnapshot(defs, [...working.values()]);
    const bad = checkMembers(snap, tenant, g);
    if (bad) {
      outcomes.push({ ...base, status: "invalid", reason: bad.reason, ...(bad.unknown ? { unknown: bad.unknown } : {}) });
      continue;
    }
    const spec = normalise(g);
    const meta = { description: g.description ?? null, owner: g.owner ?? null, tags: g.tags ?? {} };
    const existing = working.get(key);
    if (existing) {
      if (canonical(existing.spec) !== canonical(spec)) {
        outcomes.push({ ...base, status: "conflict", reason: `${g.kind} ${g.name}@${g.version} exists with a different definition; register a new version to change it` });
        continue;
      }
      if (existing.description === meta.description && existing.owner === meta.owner && canonical(existing.tags) === canonical(meta.tags)) {
        outcomes.push({ ...base, status: "unchanged", group: existing });
        continue;
      }
      const updated: GroupRow = { ...existing, ...meta, updated_at: now };
      working.set(key, updated);
      const pending = inserts.get(key);
      if (pending) Object.assign(pending, meta);
      else updates.set(existing.id, { id: existing.id, ...meta, updated_at: now });
      outcomes.push({ ...base, status: "updated", group: updated });
      snap = undefined;
      continue;
    }
    if (g.kind === "view") {
      const others = [...working.values()].filter((o) => o.kind === "view" && o.tenant === tenant);
      const sameName = others.find((o) => o.name === g.name && o.spec.entity_type !== spec.entity_type);
      const sameType = others.find((o) => o.spec.entity_type === spec.entity_type && canonical(o.spec.join_keys) !== canonical(spec.join_keys));
      if (sameName || sameType) {
        const reason = sameName
          ? `other versions of view ${g.name} have entity_type ${sameName.spec.entity_type}; all versions of a view share one entity type`
          : `view ${sameType?.name}@${sameType?.version} gives entity type ${spec.entity_type} the join keys ${sameType?.spec.join_keys?.join(", ")}; every view of an entity type uses the same join keys`;
        outcomes.push({ ...base, status: "conflict", reason });
        continue;
      }
    }
    const row: NewGroup = { tenant, kind: g.kind, name: g.name, version: g.version, spec, ...meta, created_at: now, updated_at: now };
    inserts.set(key, row);
    working.set(key, { id: -1, ...row });
    outcomes.push({ ...base, status: "new", group: { id: -1, ...row } });
    snap = undefined;
  }
  const ok = outcomes.every((o) => o.status !== "conflict" && o.status !== "invalid");
  return { outcomes, ok, plan: { ...f.plan, groupInserts: [...inserts.values()], groupUpdates: [...updates.values()] } };
}

/**
 * Registers features, views and services for a tenant, all or nothing (applied only when none
 * is in conflict or invalid and `dryRun` is false), then refreshes this process's snapshot.
 */
export async function registerCatalog(
  deps: Pick<Deps, "registry" | "clock" | "config" | "log"> & { stores: Pick<Stores, "registry"> },
  tenant: string,
  features: readonly RegisterItem[],
  groups: readonly GroupItem[],
  dryRun = false,
): Promise<{ outcomes: CatalogOutcome[]; ok: boolean }> {
  const now = deps.clock.now();
  const { result, inserted, insertedGroups } = await dbCall(deps, "register", () =>
    deps.stores.registry.registerCatalog(tenant, (defs, current) => {
      const d = decideCatalog(tenant, features, groups, defs, current, now);
      return { plan: d.plan, apply: d.ok && !dryRun, result: d };
    }),
  );
  const defIds = new Map(inserted.map((d) => [`${d.name}@${d.version}`, d.id]));
  const groupIds = new Map(insertedGroups.map((g) => [`${g.kind}:${g.name}@${g.version}`, g.id]));
  for (const o of result.outcomes) {
    if (o.definition?.id === -1) o.definition = { ...o.definition, id: defIds.get(`${o.name}@${o.version}`) ?? -1 };
    if (o.group?.id === -1) o.group = { ...o.group, id: groupIds.get(`${o.kind}:${o.name}@${o.version}`) ?? -1 };
  }
  const changed = inserted.length + insertedGroups.length + result.plan.updates.length + result.plan.groupUpdates.length > 0;
  if (changed && result.ok && !dryRun) await dbCall(deps, "registry reload", () => deps.registry.reload(tenant));
  return { outcomes: result.outcomes, ok: result.ok };
}

const iso = (ms: number) => new Date(ms).toISOString();

/** The API's FEATURE_VIEW object. */
export function viewJson(g: GroupRow) {
  return {
    name: g.name,
    version: g.version,
    entity_type: g.spec.entity_type ?? "",
    join_keys: g.spec.join_keys ?? [],
    features: g.spec.features,
    push_source: g.spec.push_source ?? null,
    description: g.description,
    owner: g.owner,
    tags: g.tags,
    created_at: iso(g.created_at),
    updated_at: iso(g.updated_at),
  };
}

/** The API's FEATURE_SERVICE object. */
export function serviceJson(g: GroupRow) {
  return {
    name: g.name,
    version: g.version,
    features: g.spec.features,
    description: g.description,
    owner: g.owner,
    tags: g.tags,
    created_at: iso(g.created_at),
    updated_at: iso(g.updated_at),
  };
}

/**
 * The references a request's `feature_service` (`name` or `name@N`) stands for; 404 when no
 * such service is registered.
 */
export function serviceFeatureNames(deps: Pick<Deps, "registry">, tenant: string, service: string, field = "feature_service"): string[] {
  const parsed = parseRef(service);
  const refs = parsed && parsed.view === undefined ? deps.registry.current.serviceRefs(tenant, parsed.name, parsed.version) : null;
  if (refs === null) {
    throw new AppError("not_found", `unknown feature service ${JSON.stringify(service)}`, {
      errors: [{ path: field, message: `unknown feature service ${JSON.stringify(service)}` }],
    });
  }
  if (refs.length === 0) throw new AppError("invalid_request", `feature service ${JSON.stringify(service)} has no features (its views are empty)`);
  return refs;
}
