/**
 * The in-memory registry the serving path resolves references against: never a query per
 * request. Rebuilt from the database at start, after this process registers, and when the
 * change feed says another process did.
 */
import type { DefinitionRow } from "./definition.ts";
import type { GroupKind, GroupRow } from "./group.ts";
import { parseDtype, type Dtype } from "./dtype.ts";
import { parseRef } from "./names.ts";

/** A definition with its parsed dtype and TTL in milliseconds. */
export interface Definition extends DefinitionRow {
  readonly type: Dtype;
  /** `ttl_hours` in ms, or `null` for "never expires" */
  readonly ttlMs: number | null;
}

/** Outcome of resolving one reference. */
export type Resolution =
  | { kind: "ok"; def: Definition }
  | { kind: "invalid"; message: string }
  | { kind: "unknown" };

function toDefinition(row: DefinitionRow): Definition {
  const type = parseDtype(row.dtype);
  if (!type) throw new Error(`definition ${row.name}@${row.version} has an unknown dtype ${row.dtype}`);
  return { ...row, type, ttlMs: row.ttl_hours === null ? null : row.ttl_hours * 3_600_000 };
}

/** An immutable view of every tenant's definitions. */
export class RegistrySnapshot {
  /** tenant -> name -> versions ascending */
  private readonly tenants = new Map<string, Map<string, Definition[]>>();

  /** tenant -> `kind:name` -> view or service versions ascending */
  private readonly groups = new Map<string, Map<string, GroupRow[]>>();

  /** tenant -> entity type -> the join keys its views name it by */
  private readonly joinKeyMap = new Map<string, Map<string, string[]>>();

  constructor(rows: readonly DefinitionRow[], groups: readonly GroupRow[] = []) {
    for (const g of groups) {
      if (g.kind === "view" && g.spec.entity_type !== undefined && g.spec.join_keys !== undefined) {
        let types = this.joinKeyMap.get(g.tenant);
        if (!types) this.joinKeyMap.set(g.tenant, (types = new Map()));
        types.set(g.spec.entity_type, g.spec.join_keys);
      }
      let byName = this.groups.get(g.tenant);
      if (!byName) this.groups.set(g.tenant, (byName = new Map()));
      const key = `${g.kind}:${g.name}`;
      byName.set(key, [...(byName.get(key) ?? []), g].sort((a, b) => a.version - b.version));
    }
    for (const row of rows) {
      let names = this.tenants.get(row.tenant);
      if (!names) this.tenants.set(row.tenant, (names = new Map()));
      const versions = names.get(row.name) ?? [];
      versions.push(toDefinition(row));
      names.set(row.name, versions);
    }
    for (const names of this.tenants.values()) for (const v of names.values()) v.sort((a, b) => a.version - b.version);
  }

  /**
   * This snapshot with `tenant`'s definitions replaced by `rows` (the other tenants are shared,
   * not copied): what a registration, or a change feed naming the tenant, reloads.
   */
  withTenant(tenant: string, rows: readonly DefinitionRow[], groups: readonly GroupRow[] = []): RegistrySnapshot {
    const next = new RegistrySnapshot([]);
    for (const [t, names] of this.tenants) if (t !== tenant) next.tenants.set(t, names);
    for (const [t, byName] of this.groups) if (t !== tenant) next.groups.set(t, byName);
    for (const [t, types] of this.joinKeyMap) if (t !== tenant) next.joinKeyMap.set(t, types);
    const fresh = new RegistrySnapshot(
      rows.filter((r) => r.tenant === tenant),
      groups.filter((g) => g.tenant === tenant),
    );
    const defs = fresh.tenants.get(tenant);
    if (defs) next.tenants.set(tenant, defs);
    const byName = fresh.groups.get(tenant);
    if (byName) next.groups.set(tenant, byName);
    const types = fresh.joinKeyMap.get(tenant);
    if (types) next.joinKeyMap.set(tenant, types);
    return next;
  }

  /**
   * Resolves `name` (highest version) or `name@N` for a tenant; through a feature view,
   * `view:name` is the feature as the view's highest version lists it (its pinned version, or
   * the highest), `view:name@N` version N of a feature the view lists.
   */
  resolve(tenant: string, ref: string): Resolution {
    const parsed = parseRef(ref);
    if (!parsed) return { kind: "invalid", message: "not a feature reference (`name`, `name@N`, `view:name` or `view:name@N`; names match ^[a-z][a-z0-9_]{0,127}$)" };
    if (parsed.view !== undefined) {
      const member = this.group(tenant, "view", parsed.view)?.spec.features.find((m) => parseRef(m)?.name === parsed.name);
      if (member === undefined) return { kind: "unknown" };
      return this.resolve(tenant, parsed.version === undefined ? member : `${parsed.name}@${parsed.version}`);
    }
    const versions = this.tenants.get(tenant)?.get(parsed.name);
    if (!versions || versions.length === 0) return { kind: "unknown" };
    const def = parsed.version === undefined ? versions[versions.length - 1] : versions.find((d) => d.version === parsed.version);
    return def ? { kind: "ok", def } : { kind: "unknown" };
  }

  /** All versions of a name, ascending (empty when unknown). */
  versions(tenant: string, name: string): readonly Definition[] {
    return this.tenants.get(tenant)?.get(name) ?? [];
  }

  /** The latest version of each of a tenant's features, by name, optionally of one entity type. */
  latest(tenant: string, entityType?: string): Definition[] {
    const out: Definition[] = [];
    for (const versions of this.tenants.get(tenant)?.values() ?? []) {
      const d = versions[versions.length - 1];
      if (d && (entityType === undefined || d.entity_type === entityType)) out.push(d);
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** A view or service: version `version`, or the highest when undefined. */
  group(tenant: string, kind: GroupKind, name: string, version?: number): GroupRow | undefined {
    const versions = this.groupVersions(tenant, kind, name);
    return version === undefined ? versions[versions.length - 1] : versions.find((g) => g.version === version);
  }

  /** The key columns an entity type is named by (its views' `join_keys`; else the type's name). */
  joinKeys(tenant: string, entityType: string): readonly string[] {
    return this.joinKeyMap.get(tenant)?.get(entityType) ?? [entityType];
  }

  /** All versions of a view or service, ascending (empty when unknown). */
  groupVersions(tenant: string, kind: GroupKind, name: string): readonly GroupRow[] {
    return this.groups.get(tenant)?.get(`${kind}:${name}`) ?? [];
  }

  /** The highest version of each of a tenant's views or services, by name. */
  latestGroups(tenant: string, kind: GroupKind): GroupRow[] {
    const out: GroupRow[] = [];
    for (const [key, versions] of this.groups.get(tenant) ?? []) {
      const g = versions[versions.length - 1];
      if (g && key.startsWith(`${kind}:`)) out.push(g);
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /**
   * The feature references a service stands for, in its order, `view:*` expanded to every
   * feature of the view's highest version (`view:name`). `null` when the service is unknown.
   */
  serviceRefs(tenant: string, name: string, version?: number): string[] | null {
    const svc = this.group(tenant, "service", name, version);
    if (!svc) return null;
    const out: string[] = [];
    for (const ref of svc.spec.features) {
      const star = /^([a-z][a-z0-9_]{0,127}):\*$/.exec(ref);
      if (!star) {
        out.push(ref);
        continue;
      }
      const view = star[1] as string;
      for (const m of this.group(tenant, "view", view)?.spec.features ?? []) out.push(`${view}:${parseRef(m)?.name ?? m}`);
    }
    return [...new Set(out)];
  }
}
