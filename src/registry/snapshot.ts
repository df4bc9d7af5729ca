/**
 * The in-memory registry the serving path resolves references against: never a query per
 * request. Rebuilt from the database at start, after this process registers, and when the
 * change feed says another process did.
 */
import type { DefinitionRow } from "./definition.ts";
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

  constructor(rows: DefinitionRow[]) {
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
  withTenant(tenant: string, rows: readonly DefinitionRow[]): RegistrySnapshot {
    const next = new RegistrySnapshot([]);
    for (const [t, names] of this.tenants) if (t !== tenant) next.tenants.set(t, names);
    const fresh = new RegistrySnapshot(rows.filter((r) => r.tenant === tenant)).tenants.get(tenant);
    if (fresh) next.tenants.set(tenant, fresh);
    return next;
  }

  /** Resolves `name` (highest version) or `name@N` for a tenant. */
  resolve(tenant: string, ref: string): Resolution {
    const parsed = parseRef(ref);
    if (!parsed) return { kind: "invalid", message: "not a feature reference (`name` or `name@N`, name matching ^[a-z][a-z0-9_]{0,127}$)" };
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
}
