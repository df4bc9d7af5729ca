/**
 * Feast's feature-server API over our registry and stores: `get-online-features` answers
 * Feast's column-oriented shape (what feast/feature_server.py returns and
 * feast/infra/online_stores/remote.py reads), `write-to-online-store` and `push` take Feast's
 * columnar `df`. Entity columns are a view's `join_keys`; `view:name` references as Feast writes
 * them; our `expired` is Feast's `OUTSIDE_MAX_AGE`.
 */
import { AppError, type FieldError } from "../errors.ts";
import { compositeEntityId, entityIdProblem, parseRef } from "../registry/names.ts";
import type { Definition } from "../registry/snapshot.ts";
import type { GroupRow } from "../store/types.ts";
import { parseTime } from "../lib/time.ts";
import { serviceFeatureNames } from "./catalog.ts";
import type { Deps } from "./deps.ts";
import { resolveFeatureSet, type ServedValue } from "./features.ts";
import { lookupAcrossTypes } from "./multi.ts";
import { validateRecords, type ValidationDeps, type WriteGroup, type WriteRecord } from "./write.ts";

/** Feast's `GetOnlineFeaturesRequest` (fields Feast's server ignores are ignored here too). */
export interface FeastOnlineRequest {
  entities: Record<string, unknown[]>;
  features?: string[] | undefined;
  feature_service?: string | undefined;
  full_feature_names?: boolean | undefined;
}

/** Feast's `OnlineFeaturesResponse`: one column per entity key, then one per feature. */
export interface FeastOnlineResponse {
  metadata: { feature_names: string[] };
  results: { values: unknown[]; statuses: FeastStatus[]; event_timestamps: string[] }[];
}

/** Feast's `FieldStatus` names that we answer. */
export type FeastStatus = "PRESENT" | "NOT_FOUND" | "OUTSIDE_MAX_AGE";

const STATUS: Record<ServedValue["status"], FeastStatus> = { present: "PRESENT", not_found: "NOT_FOUND", expired: "OUTSIDE_MAX_AGE" };
/** What Feast answers for "no timestamp" (a protobuf Timestamp of zero). */
const EPOCH = "1970-01-01T00:00:00Z";

/** Feast's timestamp form: no fraction when it is zero, else milliseconds. */
function feastTime(iso: string | null): string {
  if (iso === null) return EPOCH;
  return iso.endsWith(".000Z") ? `${iso.slice(0, -5)}Z` : iso;
}

/** An entity key value as our entity id: strings as they are, integers in decimal. */
function entityId(v: unknown, path: string, errors: FieldError[]): string {
  let id: string | undefined;
  if (typeof v === "string") id = v;
  else if (typeof v === "number" && Number.isSafeInteger(v)) id = String(v);
  const problem = id === undefined ? "expected a string or an integer" : entityIdProblem(id);
  if (problem) errors.push({ path, message: problem });
  return id ?? "";
}

/** The entity key columns of a request: equal lengths, at most `max` rows. */
function entityColumns(entities: Record<string, unknown[]>, max: number, field: string): { rows: number; ids: Map<string, string[]> } {
  const cols = Object.entries(entities);
  if (cols.length === 0) throw new AppError("invalid_request", `${field} names no entity key`, { errors: [{ path: field, message: "at least one join key column is required" }] });
  const rows = cols[0]?.[1].length ?? 0;
  const errors: FieldError[] = [];
  for (const [k, v] of cols) {
    if (v.length !== rows) errors.push({ path: `${field}.${k}`, message: `has ${v.length} values; every entity column needs ${rows}` });
  }
  if (rows === 0 || rows > max) errors.push({ path: field, message: `between 1 and ${max} entity rows are required` });
  if (errors.length > 0) throw new AppError("invalid_request", "entity columns do not line up", { errors });
  const ids = new Map(cols.map(([k, v]) => [k, v.map((x, i) => entityId(x, `${field}.${k}[${i}]`, errors))]));
  if (errors.length > 0) throw new AppError("invalid_request", "invalid entity key value(s)", { errors: errors.slice(0, 100) });
  return { rows, ids };
}

/** The output name of a reference, as Feast names it (`view__name` with full feature names). */
function outputName(ref: string, full: boolean): string {
  const p = parseRef(ref);
  if (!p) return ref;
  const name = p.version === undefined ? p.name : `${p.name}@${p.version}`;
  return full && p.view !== undefined ? `${p.view}__${name}` : name;
}

/** `POST /get-online-features`. */
export async function feastOnline(deps: Deps, tenant: string, req: FeastOnlineRequest, maxRows: number): Promise<FeastOnlineResponse> {
  const snapshot = deps.registry.current;
  // As Feast's server does: a feature_service, when given, is what is read.
  const field = req.feature_service !== undefined ? "feature_service" : "features";
  const names = req.feature_service !== undefined ? serviceFeatureNames(deps, tenant, req.feature_service) : (req.features ?? []);
  if (names.length === 0) throw new AppError("invalid_request", "name features or a feature_service", { errors: [{ path: "features", message: "features or feature_service is required" }] });
  const { refs, defs } = resolveFeatureSet(snapshot, tenant, names, field);
  const full = req.full_feature_names === true;
  const outNames = refs.map((r) => outputName(r, full));
  const dup = outNames.find((n, i) => outNames.indexOf(n) !== i);
  if (dup !== undefined) {
    throw new AppError("invalid_request", `two requested features are both named ${dup} in the response; set full_feature_names: true`, { errors: [{ path: field, message: `duplicate output name ${dup}` }] });
  }
  const { rows, ids } = entityColumns(req.entities, maxRows, "entities");
  const served = await lookupAcrossTypes(
    deps,
    tenant,
    defs,
    rows,
    (type) => {
      const cols = snapshot.joinKeys(tenant, type).map((k) => ids.get(k));
      if (cols.some((c) => c === undefined)) return undefined;
      if (cols.length === 1) return cols[0];
      return Array.from({ length: rows }, (_, r) => compositeEntityId(cols.map((c) => (c as string[])[r] as string)));
    },
    (type, def: Definition) =>
      new AppError("invalid_request", `entities has no ${snapshot.joinKeys(tenant, type).join(", ")} column (the join key of ${def.name}, entity type ${type})`, {
        errors: [{ path: "entities", message: `missing join key ${snapshot.joinKeys(tenant, type).join(", ")}` }],
      }),
  );
  const entityCols = Object.entries(req.entities);
  const results: FeastOnlineResponse["results"] = entityCols.map(([, values]) => ({
    values,
    statuses: new Array<FeastStatus>(rows).fill("PRESENT"),
    event_timestamps: new Array<string>(rows).fill(EPOCH),
  }));
  for (let f = 0; f < refs.length; f++) {
    const values = new Array<unknown>(rows);
    const statuses = new Array<FeastStatus>(rows);
    const times = new Array<string>(rows);
    for (let r = 0; r < rows; r++) {
      const s = (served[r] as ServedValue[])[f] as ServedValue;
      values[r] = s.value;
      statuses[r] = STATUS[s.status];
      times[r] = feastTime(s.event_time);
    }
    results.push({ values, statuses, event_timestamps: times });
  }
  return { metadata: { feature_names: [...entityCols.map(([k]) => k), ...outNames] }, results };
}

/** Feast's columnar data frame: column -> values, one per row. */
export type FeastFrame = Record<string, unknown[]>;

/** The frame cell of a write problem: `features.view:name` of record r -> `df.name[r]`. */
function frameCell(field: string, record: number, view: string): string {
  const col = field === "event_time" ? TIME_COLUMN : field.replace(/^features\./, "").replace(`${view}:`, "");
  return `df.${col}[${record}]`;
}

/** Columns Feast's clients add to every written frame. */
const TIME_COLUMN = "event_timestamp";
const IGNORED = new Set(["created"]);

/** The event time of a frame cell: RFC 3339, or ISO 8601 without offset (UTC, as Feast sends it). */
function frameTime(v: unknown, path: string, errors: FieldError[], now: number): string | undefined {
  if (v === null || v === undefined) return new Date(now).toISOString();
  const text = typeof v === "string" ? (/(?:z|[+-]\d\d:?\d\d)$/i.test(v) ? v : `${v}Z`) : undefined;
  if (text === undefined || parseTime(text) === null) {
    errors.push({ path, message: "expected an ISO 8601 / RFC 3339 timestamp (no offset means UTC)" });
    return undefined;
  }
  return text;
}

/**
 * A view's rows of a frame as write records (`view:name` references). `used` collects the
 * columns this view consumed. A null cell is no value (nothing is written for it).
 */
function viewRecords(view: GroupRow, frame: FeastFrame, rows: number, now: number, used: Set<string>, errors: FieldError[]): WriteRecord[] {
  const keys = view.spec.join_keys ?? [];
  const idCols = keys.map((k) => frame[k]);
  if (idCols.some((c) => c === undefined)) {
    errors.push({ path: "df", message: `missing join key column(s) ${keys.filter((k) => frame[k] === undefined).join(", ")} of feature view ${view.name}` });
    return [];
  }
  for (const k of keys) used.add(k);
  const members = view.spec.features.map((m) => parseRef(m)?.name ?? m).filter((name) => frame[name] !== undefined);
  for (const m of members) used.add(m);
  const times = frame[TIME_COLUMN];
  const out: WriteRecord[] = [];
  for (let r = 0; r < rows; r++) {
    const features: Record<string, unknown> = {};
    for (const m of members) {
      const v = (frame[m] as unknown[])[r];
      if (v !== null && v !== undefined) features[`${view.name}:${m}`] = v;
    }
    const event_time = frameTime(times?.[r], `df.${TIME_COLUMN}[${r}]`, errors, now);
    const id = compositeEntityId(keys.map((k, j) => entityId((idCols[j] as unknown[])[r], `df.${k}[${r}]`, errors)));
    out.push({ entity_id: id, ...(event_time ? { event_time } : {}), features });
  }
  return out;
}

/**
 * A frame written through feature views, validated (every view at once) into the groups to
 * store in ONE transaction: a push through several views is all or nothing. 400 listing every
 * bad cell otherwise; nothing is stored here.
 */
function frameGroups(deps: ValidationDeps, tenant: string, views: readonly GroupRow[], frame: FeastFrame, maxRows: number): WriteGroup[] {
  const cols = Object.entries(frame);
  const rows = cols[0]?.[1].length ?? 0;
  const errors: FieldError[] = [];
  for (const [k, v] of cols) if (v.length !== rows) errors.push({ path: `df.${k}`, message: `has ${v.length} values; every column needs ${rows}` });
  if (rows > maxRows) errors.push({ path: "df", message: `at most ${maxRows} rows` });
  if (errors.length > 0) throw new AppError("invalid_request", "df columns do not line up", { errors });
  const now = deps.clock.now();
  const used = new Set<string>([TIME_COLUMN, ...IGNORED]);
  const batches = views.map((view) => ({ view, records: viewRecords(view, frame, rows, now, used, errors) }));
  for (const [k] of cols) if (!used.has(k)) errors.push({ path: `df.${k}`, message: `not a join key or feature of ${views.map((v) => v.name).join(", ")}` });
  if (errors.length > 0) throw new AppError("invalid_request", "invalid df; nothing was written", { errors: errors.slice(0, 100) });
  const groups: WriteGroup[] = [];
  for (const { view, records } of batches) {
    const entityType = view.spec.entity_type as string;
    const v = validateRecords(deps, tenant, entityType, records, now);
    if (v.ok) groups.push({ tenant, entityType, rows: v.rows, defs: v.defs });
    else for (const p of v.problems) errors.push({ path: frameCell(p.field, p.record, view.name), message: p.message });
  }
  if (errors.length > 0) throw new AppError("invalid_request", "invalid df; nothing was written", { errors: errors.slice(0, 100) });
  return groups;
}

/**
 * `POST /write-to-online-store`: a frame of one feature view, as the groups to store (in one
 * transaction: the HTTP route stores them in the bulk lane, src/lane).
 */
export function feastWriteGroups(deps: ValidationDeps, tenant: string, viewName: string, frame: FeastFrame, maxRows: number): WriteGroup[] {
  const view = deps.registry.current.group(tenant, "view", viewName);
  if (!view) throw new AppError("not_found", `unknown feature view ${JSON.stringify(viewName)}`, { errors: [{ path: "feature_view_name", message: "no such feature view" }] });
  return frameGroups(deps, tenant, [view], frame, maxRows);
}

/**
 * `POST /push`: a frame written through every feature view whose `push_source` is the given
 * name, as the groups to store. Our writes always keep history (what `batch` reads) and the
 * online value together, so `to` is `online` or `online_and_offline`; `offline` alone is refused.
 */
export function feastPushGroups(deps: ValidationDeps, tenant: string, pushSource: string, frame: FeastFrame, to: string, maxRows: number): WriteGroup[] {
  if (to === "offline") {
    throw new AppError("invalid_request", "to: offline is not supported: every write here is stored in history and online together; use online or online_and_offline", {
      errors: [{ path: "to", message: "must be online or online_and_offline" }],
    });
  }
  const views = deps.registry.current.latestGroups(tenant, "view").filter((v) => v.spec.push_source === pushSource);
  if (views.length === 0) throw new AppError("not_found", `no feature view has push_source ${JSON.stringify(pushSource)}`, { errors: [{ path: "push_source_name", message: "no such push source" }] });
  return frameGroups(deps, tenant, views, frame, maxRows);
}
