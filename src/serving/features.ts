/**
 * Shared pieces of the read paths: resolving a request's feature references against the
 * snapshot, and turning a stored row into a served value with its status.
 */
import { AppError, type FieldError } from "../errors.ts";
import { decodeValue, toJsonValue, type StoredValue } from "../registry/dtype.ts";
import type { Definition, RegistrySnapshot } from "../registry/snapshot.ts";
import { formatTime } from "../lib/time.ts";
import { HeldRow } from "../store/held-row.ts";
import type { StoredRow } from "../store/types.ts";

/** A request's distinct references, resolved, and the entity type they share. */
export interface ResolvedFeatures {
  refs: string[];
  defs: Definition[];
  entityType: string;
}

/**
 * Resolves `feature_names` (duplicates collapse): 400 for a malformed reference or mixed entity
 * types, 404 listing every unknown reference.
 */
export function resolveFeatures(snapshot: RegistrySnapshot, tenant: string, names: readonly string[], field = "feature_names"): ResolvedFeatures {
  const { refs, defs } = resolveFeatureSet(snapshot, tenant, names, field);
  const entityType = defs[0]?.entity_type ?? "";
  const mixed = defs.filter((d) => d.entity_type !== entityType);
  if (mixed.length > 0) {
    throw new AppError("invalid_request", "all features of one request must share one entity type", {
      errors: refs.map((ref, i) => ({
        path: `${field}[${names.indexOf(ref)}]`,
        message: `entity type ${(defs[i] as Definition).entity_type}`,
      })),
    });
  }
  return { refs, defs, entityType };
}

/**
 * Resolves references of any entity types (duplicates collapse; `view:name` through the
 * tenant's feature views): 400 for a malformed reference, 404 listing every unknown one.
 */
export function resolveFeatureSet(snapshot: RegistrySnapshot, tenant: string, names: readonly string[], field = "feature_names"): { refs: string[]; defs: Definition[] } {
  const refs = [...new Set(names)];
  const defs: Definition[] = [];
  const invalid: FieldError[] = [];
  const unknown: FieldError[] = [];
  refs.forEach((ref) => {
    const r = snapshot.resolve(tenant, ref);
    const path = `${field}[${names.indexOf(ref)}]`;
    if (r.kind === "ok") defs.push(r.def);
    else if (r.kind === "invalid") invalid.push({ path, message: r.message });
    else unknown.push({ path, message: `unknown feature ${JSON.stringify(ref)}` });
  });
  if (invalid.length > 0) throw new AppError("invalid_request", "malformed feature reference", { errors: invalid });
  if (unknown.length > 0) {
    const list = unknown.map((u) => u.message.slice("unknown feature ".length)).join(", ");
    throw new AppError("not_found", `unknown feature(s): ${list}`, { errors: unknown });
  }
  return { refs, defs };
}

/** Status of one served value. */
export type ValueStatus = "present" | "not_found" | "expired";

/** One served value and its metadata. */
export interface ServedValue {
  value: unknown;
  status: ValueStatus;
  event_time: string | null;
}

const NOT_FOUND: ServedValue = { value: null, status: "not_found", event_time: null };

/**
 * The JSON form of a stored value, remembered in the row when a store in this process holds it
 * ({@link HeldRow}: the in-process cache and the Redis near cache hand out the same row on every
 * hit, so a hot value is decoded and formatted once; float32 lists cost ~0.5 us per element to
 * format as shortest decimals). Rows read fresh from Redis or the database are not remembered.
 * Served values are never mutated (they are only serialised), so sharing them between responses
 * is safe.
 */
function jsonForm(def: Definition, row: HeldRow): unknown {
  let v = row.form;
  if (v === undefined) {
    v = toJsonValue(def.type, decodeHeld(def, row));
    row.form = v;
  }
  return v;
}

/**
 * {@link decodeValue} of a value a store holds (a {@link HeldRow}), read from a copy of its bytes:
 * msgpackr leaves a DataView on the array it reads (`source.dataView`, kept for a buffer that is
 * reused), and the view makes the array materialise its ArrayBuffer. On held bytes both would stay
 * for as long as the store holds the value: after 20,000 entities x 10 values were served once,
 * 200,000 DataViews more for every full collection to mark (bench/gc-pause.ts). The copy and its
 * view are young garbage, which an eden collection never marks.
 */
export function decodeHeld(def: Definition, row: HeldRow): StoredValue {
  return decodeValue(def.type, row.value.slice());
}

/** formatTime with a one-entry memo: the values of one entity usually share one event time. */
let lastMs = Number.NaN;
let lastIso = "";
function formatEventTime(ms: number): string {
  if (ms !== lastMs) {
    lastIso = formatTime(ms);
    lastMs = ms;
  }
  return lastIso;
}

/**
 * The served form of a stored row at time `at`: `expired` when event_time <= at - ttl,
 * `not_found` when there is no row. With `memo` (the online store has `stableRows`), the JSON
 * form of a row the store holds (a {@link HeldRow}) is remembered in it.
 */
export function serveValue(def: Definition, row: StoredRow | null | undefined, at: number, memo = false): ServedValue {
  if (!row) return NOT_FOUND;
  if (def.ttlMs !== null && row.event_time <= at - def.ttlMs) {
    return { value: null, status: "expired", event_time: formatEventTime(row.event_time) };
  }
  const value = memo && row instanceof HeldRow ? jsonForm(def, row) : toJsonValue(def.type, decodeValue(def.type, row.value));
  return { value, status: "present", event_time: formatEventTime(row.event_time) };
}

/**
 * The served form of a point-in-time answer already decided (./asof-merge.ts: its status, the
 * decoded value, the event time of the row it came from): the same as {@link serveValue} gives
 * for that row.
 */
export function serveAnswer(def: Definition, status: ValueStatus, cell: unknown, eventTime: number): ServedValue {
  if (status === "not_found") return NOT_FOUND;
  if (status === "expired") return { value: null, status, event_time: formatEventTime(eventTime) };
  return { value: toJsonValue(def.type, cell as StoredValue), status, event_time: formatEventTime(eventTime) };
}

/** The `features` and `metadata` objects of one result, keyed by the request's references. */
export function renderResult(refs: readonly string[], served: readonly ServedValue[]): {
  features: Record<string, unknown>;
  metadata: Record<string, { status: ValueStatus; event_time: string | null }>;
} {
  const features: Record<string, unknown> = {};
  const metadata: Record<string, { status: ValueStatus; event_time: string | null }> = {};
  for (let i = 0; i < refs.length; i++) {
    const ref = refs[i] as string;
    const s = served[i] as ServedValue;
    features[ref] = s.value;
    metadata[ref] = { status: s.status, event_time: s.event_time };
  }
  return { features, metadata };
}
