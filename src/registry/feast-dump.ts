/**
 * Converts what `feast registry-dump` prints (the registry as protobuf JSON) into our
 * definitions: features (types mapped to dtypes, the view's ttl on each), feature views (the
 * entity type and join keys from the view's entities, its push source) and feature services.
 * Whatever has no equivalent is listed, never silently dropped.
 */
import { DTYPES, type DtypeName } from "./dtype.ts";
import { NAME_RE } from "./names.ts";

/** One converted feature, view or service, in the form `register FILE.yaml` takes. */
export interface ImportedFeature {
  name: string;
  version: number;
  dtype: DtypeName;
  entity_type: string;
  ttl_hours?: number;
  description?: string;
}
export interface ImportedView {
  name: string;
  version: number;
  entity_type: string;
  join_keys: string[];
  features: string[];
  push_source?: string;
  description?: string;
  owner?: string;
  tags?: Record<string, string>;
}
export interface ImportedService {
  name: string;
  version: number;
  features: string[];
  description?: string;
  owner?: string;
  tags?: Record<string, string>;
}

/** The conversion: what to register, and every part of the dump that is not imported (with why). */
export interface FeastImport {
  project: string;
  features: ImportedFeature[];
  feature_views: ImportedView[];
  feature_services: ImportedService[];
  unsupported: string[];
}

/** Feast's ValueType names -> our dtypes (scalars; `*_LIST` maps to the list form). */
const SCALARS: Record<string, string> = {
  INT32: "int32",
  INT64: "int64",
  FLOAT: "float32",
  DOUBLE: "float64",
  STRING: "string",
  BYTES: "bytes",
  BOOL: "bool",
  UNIX_TIMESTAMP: "timestamp",
};

/** Our dtype of a Feast value type, or undefined when there is none (maps, sets, JSON, ...). */
export function dtypeOfFeast(valueType: string): DtypeName | undefined {
  const list = valueType.endsWith("_LIST");
  const scalar = SCALARS[list ? valueType.slice(0, -5) : valueType];
  if (scalar === undefined) return undefined;
  const d = list ? `${scalar}[]` : scalar;
  return (DTYPES as readonly string[]).includes(d) ? (d as DtypeName) : undefined;
}

// biome-ignore lint: protobuf JSON of any shape
type Obj = Record<string, any>;
const str = (v: unknown): string | undefined => (typeof v === "string" && v !== "" ? v : undefined);
const list = (v: unknown): Obj[] => (Array.isArray(v) ? (v as Obj[]) : []);
const meta = (spec: Obj) => ({
  ...(str(spec.description) ? { description: spec.description as string } : {}),
  ...(str(spec.owner) ? { owner: spec.owner as string } : {}),
  ...(spec.tags && typeof spec.tags === "object" && Object.keys(spec.tags).length > 0 ? { tags: spec.tags as Record<string, string> } : {}),
});

/** `"7200s"` -> 2 (hours); zero or absent -> undefined (Feast: no expiry). */
function ttlHours(ttl: unknown): number | undefined {
  const m = typeof ttl === "string" ? /^(\d+(?:\.\d+)?)s$/.exec(ttl) : null;
  const s = m ? Number(m[1]) : 0;
  return s > 0 ? s / 3600 : undefined;
}

/**
 * Parses the dump text (JSON, possibly after log lines) and converts it; `ttl: false` leaves
 * the views' ttl out. Throws on text that is not a dump.
 */
export function convertFeastDump(text: string, opts: { ttl?: boolean } = {}): FeastImport {
  const start = text.indexOf("{");
  let dump: Obj;
  try {
    dump = JSON.parse(start >= 0 ? text.slice(start) : text) as Obj;
  } catch (e) {
    throw new Error(`not the JSON that \`feast registry-dump\` prints (${(e as Error).message})`);
  }
  if (typeof dump !== "object" || dump === null || (!("featureViews" in dump) && !("entities" in dump))) {
    throw new Error("not the JSON that `feast registry-dump` prints (no featureViews or entities)");
  }
  const out: FeastImport = { project: str(dump.project) ?? "", features: [], feature_views: [], feature_services: [], unsupported: [] };
  const badName = (kind: string, name: string) => out.unsupported.push(`${kind} ${name}: name does not match ^[a-z][a-z0-9_]{0,127}$ (Feast clients refer to it by name, so it is not renamed)`);

  const entities = new Map<string, Obj>();
  for (const e of list(dump.entities)) if (str(e.spec?.name)) entities.set(e.spec.name as string, e.spec as Obj);

  /** feature name -> its versions as imported so far */
  const versions = new Map<string, ImportedFeature[]>();
  const imported = new Map<string, Set<string>>();
  for (const v of list(dump.featureViews)) {
    const spec = (v.spec ?? {}) as Obj;
    const name = str(spec.name) ?? "?";
    if (!NAME_RE.test(name)) {
      badName("feature view", name);
      continue;
    }
    const ents = (Array.isArray(spec.entities) ? spec.entities : []) as string[];
    if (ents.length === 0 || ents.includes("__dummy")) {
      out.unsupported.push(`feature view ${name}: has no entity (entityless views are not supported)`);
      continue;
    }
    const entityType = ents.join("_");
    const joinKeys = list(spec.entityColumns).map((c) => c.name as string);
    if (joinKeys.length === 0) for (const e of ents) joinKeys.push(str(entities.get(e)?.joinKey) ?? e);
    if (!NAME_RE.test(entityType) || joinKeys.some((k) => !NAME_RE.test(k))) {
      badName("entity of feature view", `${name} (${entityType}: ${joinKeys.join(", ")})`);
      continue;
    }
    const ttl = opts.ttl === false ? undefined : ttlHours(spec.ttl);
    const members: string[] = [];
    for (const f of list(spec.features)) {
      const fname = str(f.name) ?? "?";
      const dtype = dtypeOfFeast(str(f.valueType) ?? "");
      if (!NAME_RE.test(fname)) {
        badName("feature", `${name}:${fname}`);
        continue;
      }
      if (dtype === undefined) {
        out.unsupported.push(`feature ${name}:${fname}: Feast type ${f.valueType ?? "(none)"} has no dtype here`);
        continue;
      }
      const existing = versions.get(fname) ?? [];
      if (existing.length > 0 && existing[0]?.entity_type !== entityType) {
        out.unsupported.push(`feature ${name}:${fname}: a feature ${fname} of entity type ${existing[0]?.entity_type} exists (view ${[...(imported.get(fname) ?? [])].join(", ")}); feature names are unique per tenant across entity types`);
        continue;
      }
      let def = existing.find((d) => d.dtype === dtype && d.ttl_hours === ttl);
      if (!def) {
        def = { name: fname, version: existing.length + 1, dtype, entity_type: entityType, ...(ttl !== undefined ? { ttl_hours: ttl } : {}) };
        existing.push(def);
        versions.set(fname, existing);
        out.features.push(def);
      }
      imported.set(fname, (imported.get(fname) ?? new Set()).add(name));
      // the first version is referenced by name; other versions are pinned
      members.push(def.version === 1 ? fname : `${fname}@${def.version}`);
    }
    if (members.length === 0) {
      out.unsupported.push(`feature view ${name}: none of its features could be imported`);
      continue;
    }
    const push = spec.streamSource?.type === "PUSH_SOURCE" ? str(spec.streamSource?.name) : undefined;
    if (spec.streamSource && !push) out.unsupported.push(`feature view ${name}: stream source ${spec.streamSource.name ?? ""} (${spec.streamSource.type ?? "?"}) is not imported; write values through the API, /push or the Kafka worker`);
    out.feature_views.push({ name, version: 1, entity_type: entityType, join_keys: joinKeys, features: members, ...(push && NAME_RE.test(push) ? { push_source: push } : {}), ...meta(spec) });
  }
  const views = new Set(out.feature_views.map((v) => v.name));

  for (const s of list(dump.featureServices)) {
    const spec = (s.spec ?? {}) as Obj;
    const name = str(spec.name) ?? "?";
    if (!NAME_RE.test(name)) {
      badName("feature service", name);
      continue;
    }
    const refs: string[] = [];
    const missing: string[] = [];
    for (const p of list(spec.features)) {
      const view = str(p.featureViewName) ?? "?";
      if (str(p.featureViewNameAlias)) missing.push(`${view} (aliased as ${p.featureViewNameAlias})`);
      else if (!views.has(view)) missing.push(view);
      else for (const c of list(p.featureColumns)) if (imported.get(c.name)?.has(view)) refs.push(`${view}:${c.name}`);
        else missing.push(`${view}:${c.name}`);
    }
    if (missing.length > 0) {
      out.unsupported.push(`feature service ${name}: refers to ${missing.join(", ")}, which ${missing.length === 1 ? "is" : "are"} not imported; the service is not imported`);
      continue;
    }
    out.feature_services.push({ name, version: 1, features: refs, ...meta(spec) });
  }

  for (const [key, what] of [
    ["onDemandFeatureViews", "on-demand feature view (a Python transformation)"],
    ["streamFeatureViews", "stream feature view"],
    ["savedDatasets", "saved dataset"],
    ["validationReferences", "validation reference"],
    ["permissions", "permission (use API keys and scopes)"],
  ] as const) {
    for (const x of list(dump[key])) out.unsupported.push(`${what} ${x.spec?.name ?? "?"}: not supported`);
  }
  const sources = list(dump.dataSources).map((d) => d.name ?? d.spec?.name).filter(Boolean);
  if (sources.length > 0) out.unsupported.push(`data sources ${sources.join(", ")}: not imported (offline sources; values come in through write, /push, /write-to-online-store or Kafka)`);
  return out;
}
