/**
 * Writing feature values: all or nothing. Every value is validated against its definition
 * first; only then is the batch stored (history + latest, one transaction) and offered to the
 * online cache, which keeps whichever value is newest by (event_time, seq).
 */
import { createHash } from "node:crypto";
import { AppError, type FieldError } from "../errors.ts";
import { coerceValue, encodeValue, MAX_VALUE_BYTES } from "../registry/dtype.ts";
import type { Definition } from "../registry/snapshot.ts";
import { parseTime } from "../lib/time.ts";
import type { ValueWrite, WrittenRow } from "../store/types.ts";
import { dbCall, type Deps } from "./deps.ts";

/** One record of a write, as validated by the request schema. */
export interface WriteRecord {
  entity_id: string;
  event_time?: string | undefined;
  features: Record<string, unknown>;
}

/** At most this many field errors are reported in one 400. */
const MAX_ERRORS = 100;

/** 16-byte digest identifying a packed value (re-send detection). */
export function valueHash(packed: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(packed).digest().subarray(0, 16));
}

/**
 * Validates records into rows ready to store, or throws one 400 listing what is wrong (which
 * record and feature). `defaultTime` stands for a missing event_time.
 */
export function prepareRows(
  deps: Pick<Deps, "registry">,
  tenant: string,
  entityType: string,
  records: readonly WriteRecord[],
  defaultTime: number,
  pathPrefix = "records",
): { rows: ValueWrite[]; defs: Definition[] } {
  const snapshot = deps.registry.current;
  const errors: FieldError[] = [];
  const rows: ValueWrite[] = [];
  const defs: Definition[] = [];
  const resolved = new Map<string, Definition | string>();
  for (let i = 0; i < records.length && errors.length < MAX_ERRORS; i++) {
    const rec = records[i] as WriteRecord;
    let eventTime = defaultTime;
    if (rec.event_time !== undefined) {
      const t = parseTime(rec.event_time);
      if (t === null) {
        errors.push({ path: `${pathPrefix}[${i}].event_time`, message: "expected an RFC 3339 timestamp" });
        continue;
      }
      eventTime = t;
    }
    for (const [ref, raw] of Object.entries(rec.features)) {
      const path = `${pathPrefix}[${i}].features.${ref}`;
      let def = resolved.get(ref);
      if (def === undefined) {
        const r = snapshot.resolve(tenant, ref);
        def =
          r.kind === "ok"
            ? r.def.entity_type === entityType
              ? r.def
              : `feature ${ref} belongs to entity type ${r.def.entity_type}, not ${entityType}`
            : r.kind === "invalid"
              ? r.message
              : `unknown feature ${JSON.stringify(ref)}`;
        resolved.set(ref, def);
      }
      if (typeof def === "string") {
        errors.push({ path, message: def });
        continue;
      }
      const v = coerceValue(def.type, raw);
      if (!v.ok) {
        errors.push({ path, message: v.message });
        continue;
      }
      const packed = encodeValue(def.type, v.value);
      if (packed.byteLength > MAX_VALUE_BYTES) {
        errors.push({ path, message: `value is ${packed.byteLength} bytes encoded; the limit is ${MAX_VALUE_BYTES}` });
        continue;
      }
      rows.push({ feature_id: def.id, entity_id: rec.entity_id, event_time: eventTime, value: packed, value_hash: valueHash(packed) });
      defs.push(def);
    }
  }
  if (errors.length > 0) {
    throw new AppError("invalid_request", `${errors.length}${errors.length >= MAX_ERRORS ? "+" : ""} invalid value(s); nothing was written`, {
      errors: errors.slice(0, MAX_ERRORS),
    });
  }
  return { rows, defs };
}

/**
 * Stores prepared rows and updates the online cache with the newly stored ones. Returns how
 * many values were accepted (identical re-sends and older values included); `onWritten` sees
 * the newly stored ones (materialize counts re-sends with it).
 */
export async function storeRows(deps: Deps, tenant: string, entityType: string, rows: ValueWrite[], defs: Definition[], onWritten?: (written: readonly WrittenRow[]) => void): Promise<number> {
  if (rows.length === 0) return 0;
  const written = await dbCall(deps, "write", () => deps.db.writeValues(rows));
  onWritten?.(written);
  await offerToCache(deps, tenant, entityType, written, defs);
  deps.metrics.valuesWritten.inc(rows.length);
  return rows.length;
}

/**
 * Offers newly stored rows of one tenant and entity type to the online cache (compare-and-set:
 * only a newer value replaces a cached one). A cache failure is counted, never thrown: the
 * database holds the values and the cache catches up by its recovery rules.
 */
export async function offerToCache(deps: Deps, tenant: string, entityType: string, written: readonly WrittenRow[], defs: readonly Definition[]): Promise<void> {
  if (written.length === 0) return;
  const ttl = new Map(defs.map((d) => [d.id, d.ttlMs]));
  const entries = written.map((w) => {
    const ttlMs = ttl.get(w.feature_id);
    return {
      key: { feature_id: w.feature_id, entity_id: w.entity_id },
      value: { event_time: w.event_time, seq: w.seq, value: w.value },
      ...(ttlMs ? { ttlSeconds: Math.ceil(ttlMs / 1000) } : {}),
    };
  });
  try {
    await deps.cache.putMany(tenant, entityType, entries);
  } catch (err) {
    deps.metrics.cacheRequests.inc({ result: "error" }, entries.length);
    deps.log.debug({ err }, "online cache update failed after a write");
  }
}

/** The `write` route's operation: validate everything, then store. */
export async function writeFeatures(deps: Deps, tenant: string, entityType: string, records: readonly WriteRecord[]): Promise<number> {
  const { rows, defs } = prepareRows(deps, tenant, entityType, records, deps.clock.now());
  return storeRows(deps, tenant, entityType, rows, defs);
}
