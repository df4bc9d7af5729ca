/**
 * Offline sources as declared under `sources:` in a definitions file: the schema, and the
 * checks that need no I/O (feature references resolve, one entity type, compatible column
 * types given a column listing). Reading the listing is the readers' job (sources/read.ts).
 */
import { dirname, isAbsolute, resolve } from "node:path";
import { z } from "@hono/zod-openapi";
import { zodErrors } from "../schemas.ts";
import { parseDtype, type Dtype, type DtypeName } from "../registry/dtype.ts";
import { NAME_PATTERN, parseRef, REF_PATTERN } from "../registry/names.ts";
import type { RegistrySnapshot } from "../registry/snapshot.ts";

const Name = z.string().regex(new RegExp(NAME_PATTERN), "must match ^[a-z][a-z0-9_]{0,127}$");
const Column = z.string().min(1).max(1024);
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

const Common = {
  name: Name,
  entity_column: Column,
  event_time_column: Column,
  /** breaks ties between rows of one entity with the same event time (greatest wins) */
  created_column: Column.optional(),
  /** column -> feature reference (`name` or `name@N`) */
  features: z.record(Column, z.string().regex(new RegExp(REF_PATTERN), "must be `name` or `name@N`")).refine((m) => Object.keys(m).length > 0, "map at least one column"),
  description: z.string().max(10_000).optional(),
};

/** One declared source, as written in the file. */
export const SourceSpec = z.discriminatedUnion("kind", [
  z.strictObject({ kind: z.literal("parquet"), path: z.string().min(1).max(4096), ...Common }),
  z.strictObject({
    kind: z.literal("csv"),
    path: z.string().min(1).max(4096),
    delimiter: z.string().length(1).optional(),
    ...Common,
  }),
  z
    .strictObject({
      kind: z.literal("postgres"),
      /** name of the environment variable holding the connection URL (never the URL itself) */
      url_env: z.string().regex(ENV_NAME, "must be an environment variable name, e.g. ANALYTICS_DATABASE_URL"),
      table: z.string().regex(/^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$/, "must be `table` or `schema.table`").optional(),
      query: z.string().min(1).max(100_000).optional(),
      ...Common,
    })
    .refine((s) => (s.table === undefined) !== (s.query === undefined), "give exactly one of `table` and `query`"),
]);
export type SourceSpec = z.output<typeof SourceSpec>;

/** A feature a source writes to, as resolved for validation. */
interface Target {
  name: string;
  version?: number | undefined;
  dtype: DtypeName;
  entity_type: string;
}

/** The abstract type of a source column, as a reader reports it. */
export type ColumnKind =
  | { kind: "bool" | "int" | "float" | "string" | "bytes" | "timestamp" | "any" }
  | { kind: "list"; of: ColumnKind };

/** How a column kind prints in messages. */
export function kindName(k: ColumnKind): string {
  return k.kind === "list" ? `list<${kindName(k.of)}>` : k.kind;
}

function scalarFits(k: ColumnKind, t: Dtype["scalar"]): boolean {
  switch (k.kind) {
    case "any":
      return true;
    case "bool":
      return t === "bool";
    case "int":
      return t === "int32" || t === "int64" || t === "float32" || t === "float64";
    case "float":
      return t === "float32" || t === "float64";
    case "string":
      return t === "string" || t === "timestamp" || t === "bytes" || t === "int64";
    case "bytes":
      return t === "bytes";
    case "timestamp":
      return t === "timestamp";
    case "list":
      return false;
  }
}

/** Whether values of a column of kind `k` can be stored as `dtype` (range checks happen per value). */
export function compatible(k: ColumnKind, dtype: Dtype): boolean {
  if (k.kind === "any") return true;
  if (dtype.list) return k.kind === "list" ? scalarFits(k.of, dtype.scalar) : k.kind === "string"; // a JSON array in a text cell
  return scalarFits(k, dtype.scalar);
}

/** A source after validation against the registry: its entity type and resolved targets. */
export interface CheckedSource {
  spec: SourceSpec;
  entityType: string;
  /** column -> the definition it writes to (as it would resolve now) */
  targets: Map<string, Target>;
}

/**
 * Parses the `sources:` list of a definitions file. Relative paths are made absolute against the
 * file's directory. Returns the specs, or per-item reasons (`sources[i]: path: message`).
 */
export function parseSources(raw: unknown, file: string): { specs: SourceSpec[]; invalid: { name: string; reason: string }[] } {
  const specs: SourceSpec[] = [];
  const invalid: { name: string; reason: string }[] = [];
  if (raw === undefined || raw === null) return { specs, invalid };
  if (!Array.isArray(raw)) return { specs, invalid: [{ name: "sources", reason: "expected a list" }] };
  const seen = new Set<string>();
  raw.forEach((item: unknown, i) => {
    const r = SourceSpec.safeParse(item);
    const label = typeof (item as { name?: unknown } | null)?.name === "string" ? (item as { name: string }).name : `sources[${i}]`;
    if (!r.success) {
      invalid.push({ name: label, reason: zodErrors(r.error).map((e) => `${e.path || "(source)"}: ${e.message}`).join("; ") });
      return;
    }
    if (seen.has(r.data.name)) {
      invalid.push({ name: label, reason: "declared twice in this file" });
      return;
    }
    seen.add(r.data.name);
    const spec = r.data;
    if ((spec.kind === "parquet" || spec.kind === "csv") && !isAbsolute(spec.path)) spec.path = resolve(dirname(resolve(file)), spec.path);
    specs.push(spec);
  });
  return { specs, invalid };
}

/**
 * Checks a source's feature mapping against the tenant's definitions plus those registered in
 * the same file (`pending`): every reference resolves, all share one entity type. Returns the
 * checked source or the reason it is invalid.
 */
export function checkMapping(spec: SourceSpec, tenant: string, snapshot: RegistrySnapshot, pending: readonly Target[]): CheckedSource | string {
  const targets = new Map<string, Target>();
  const types = new Set<string>();
  for (const [column, ref] of Object.entries(spec.features)) {
    const parsed = parseRef(ref);
    if (!parsed) return `features.${column}: ${JSON.stringify(ref)} is not a feature reference`;
    const fromFile = pending.filter((p) => p.name === parsed.name && (parsed.version === undefined || p.version === parsed.version));
    const fromFileLatest = fromFile.sort((a, b) => (b.version ?? 0) - (a.version ?? 0))[0];
    const r = snapshot.resolve(tenant, ref);
    const current = r.kind === "ok" ? r.def : undefined;
    const target = fromFileLatest && (!current || (fromFileLatest.version ?? 0) >= current.version) ? fromFileLatest : current;
    if (!target) return `features.${column}: unknown feature ${JSON.stringify(ref)} (register it first, or in the same file)`;
    targets.set(column, target);
    types.add(target.entity_type);
  }
  if (types.size !== 1) return `its features belong to several entity types (${[...types].sort().join(", ")}); a source feeds one entity type`;
  for (const c of [spec.entity_column, spec.event_time_column, spec.created_column])
    if (c !== undefined && spec.features[c] !== undefined) return `column ${JSON.stringify(c)} is both a key column and a feature`;
  return { spec, entityType: [...types][0] as string, targets };
}

/**
 * Checks the columns a source reads against a reader's listing: every column exists, the key
 * columns have usable kinds, each feature column fits its dtype. Returns the problems found.
 */
export function checkColumns(src: CheckedSource, columns: ReadonlyMap<string, ColumnKind>): string[] {
  const problems: string[] = [];
  const { spec } = src;
  const need = (c: string, what: string, ok: (k: ColumnKind) => boolean, expect: string) => {
    const k = columns.get(c);
    if (!k) problems.push(`${what} column ${JSON.stringify(c)} does not exist (columns: ${[...columns.keys()].slice(0, 20).join(", ")})`);
    else if (!ok(k)) problems.push(`${what} column ${JSON.stringify(c)} is ${kindName(k)}; expected ${expect}`);
  };
  const timeLike = (k: ColumnKind) => k.kind === "timestamp" || k.kind === "string" || k.kind === "any";
  need(spec.entity_column, "entity", (k) => k.kind === "string" || k.kind === "int" || k.kind === "any", "string or integer");
  need(spec.event_time_column, "event time", timeLike, "timestamp (or RFC 3339 text)");
  if (spec.created_column !== undefined) need(spec.created_column, "created", (k) => timeLike(k) || k.kind === "int", "timestamp or integer");
  for (const [column, t] of src.targets) {
    const dtype = parseDtype(t.dtype) as Dtype;
    need(column, `feature ${t.name}`, (k) => compatible(k, dtype), `something storable as ${t.dtype}`);
  }
  return problems;
}
