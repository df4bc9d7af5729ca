/**
 * The `sources:` part of `register FILE.yaml`: each source is checked (feature references,
 * one entity type, and, when the source can be reached, that its columns exist with types
 * that fit) before anything is applied, then stored per tenant beside the definitions.
 */
import type { Deps } from "../serving/deps.ts";
import type { RegisterItem } from "../serving/register.ts";
import { openReader, SourceError } from "./read.ts";
import { checkColumns, checkMapping, parseSources, type SourceSpec } from "./spec.ts";

/** What happened (or would happen) to one source. */
export interface SourceOutcome {
  name: string;
  status: "new" | "unchanged" | "updated" | "invalid";
  /** the reason (invalid) or what was checked */
  detail: string;
  spec?: SourceSpec;
}

function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v && typeof v === "object")
    return `{${Object.keys(v)
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(",")}}`;
  return JSON.stringify(v);
}

/**
 * Checks the `sources:` of a file (`raw`) for a tenant, against the current definitions plus
 * the valid ones in the same file. Never applies anything.
 */
export async function planSources(deps: Pick<Deps, "stores" | "registry">, tenant: string, raw: unknown, file: string, features: readonly RegisterItem[], env: Record<string, string | undefined> = process.env): Promise<{ outcomes: SourceOutcome[]; ok: boolean }> {
  const { specs, invalid } = parseSources(raw, file);
  const outcomes: SourceOutcome[] = invalid.map((i) => ({ name: i.name, status: "invalid", detail: i.reason }));
  const pending = features.flatMap((f) => ("input" in f ? [f.input] : []));
  const stored = new Map((await deps.stores.registry.sources.listSources(tenant)).map((s) => [s.name, canonical(s.spec)]));
  for (const spec of specs) {
    const checked = checkMapping(spec, tenant, deps.registry.current, pending);
    if (typeof checked === "string") {
      outcomes.push({ name: spec.name, status: "invalid", detail: checked });
      continue;
    }
    let detail: string;
    try {
      const desc = await openReader(spec, env).describe();
      const problems = checkColumns(checked, desc.columns);
      if (problems.length > 0) {
        outcomes.push({ name: spec.name, status: "invalid", detail: problems.join("; ") });
        continue;
      }
      const where = spec.kind === "postgres" ? (spec.table ?? "query") : `${desc.parts.length} file(s)`;
      detail = `${spec.kind}, ${where}, ${checked.targets.size} feature column(s) of entity type ${checked.entityType} checked`;
    } catch (e) {
      if (!(e instanceof SourceError)) throw e;
      // an unreachable source is accepted (files may arrive later); it is checked again when loaded
      detail = `${spec.kind}, entity type ${checked.entityType}; columns not checked: ${e.message}`;
    }
    const before = stored.get(spec.name);
    const status = before === undefined ? "new" : before === canonical(spec) ? "unchanged" : "updated";
    outcomes.push({ name: spec.name, status, detail, spec });
  }
  return { outcomes, ok: outcomes.every((o) => o.status !== "invalid") };
}

/** Stores the new and updated sources of a successful plan (one transaction). */
export async function applySources(deps: Pick<Deps, "stores" | "clock">, tenant: string, outcomes: readonly SourceOutcome[]): Promise<void> {
  const put = outcomes.filter((o) => (o.status === "new" || o.status === "updated") && o.spec).map((o) => ({ name: o.name, spec: o.spec }));
  if (put.length > 0) await deps.stores.registry.sources.putSources(tenant, put, deps.clock.now());
}

/** A tenant's stored source by name, or null. */
export async function loadSource(deps: Pick<Deps, "stores">, tenant: string, name: string): Promise<SourceSpec | null> {
  const row = (await deps.stores.registry.sources.listSources(tenant)).find((s) => s.name === name);
  return row ? (row.spec as SourceSpec) : null;
}
