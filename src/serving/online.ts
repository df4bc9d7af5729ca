/**
 * Online lookup: latest values for one or many entities, from the online cache with the
 * database behind it (read-through; a cache outage falls back to the database).
 */
import type { z } from "@hono/zod-openapi";
import { decodeValue, toJsonValue } from "../registry/dtype.ts";
import type { Definition, RegistrySnapshot } from "../registry/snapshot.ts";
import type { OnlineResult as OnlineResultSchema } from "../schemas.ts";
import { HeldRow } from "../store/held-row.ts";
import type { CachedValue, StoredRow, ValueKey } from "../store/types.ts";
import { dbCall, type Deps } from "./deps.ts";
import { decodeHeld, renderResult, resolveFeatures, serveValue, type ResolvedFeatures, type ServedValue } from "./features.ts";

/** The result for one entity, as the API returns it (the response schema's type). */
export type OnlineResult = z.output<typeof OnlineResultSchema>;

/** What one lookup read: the resolved features and one row (or none) per entity x feature. */
interface Lookup extends Resolved {
  /** The resolution itself (its identity keys {@link entityTexts}). */
  resolved: Resolved;
  rows: (StoredRow | null)[];
  now: number;
}

/** A resolution and the JSON keys of its references, as {@link resolve} remembers them. */
interface Resolved extends ResolvedFeatures {
  keys: string[];
  /** The feature version id of each definition. */
  featureIds: number[];
}

/**
 * Successful resolutions by tenant and feature names, per registry snapshot (snapshots are
 * immutable and replaced whole on a reload, so a remembered resolution never goes stale). A
 * model server asks for the same few lists over and over. Failures are not remembered.
 */
const resolutions = new WeakMap<RegistrySnapshot, Map<string, Resolved>>();
/** Feature lists remembered per snapshot, at most (then it starts over). */
const RESOLUTIONS_MAX = 1000;

/**
 * The last resolution made or found, checked first: a model server sends one feature list over
 * and over, and comparing its names one by one is cheaper than joining them into a key to hash.
 */
let last: { snapshot: RegistrySnapshot; tenant: string; names: readonly string[]; resolved: Resolved } | undefined;

function sameNames(a: readonly string[], b: readonly string[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function resolve(snapshot: RegistrySnapshot, tenant: string, featureNames: readonly string[]): Resolved {
  const l = last;
  if (l !== undefined && l.snapshot === snapshot && l.tenant === tenant && sameNames(l.names, featureNames)) return l.resolved;
  const r = resolveMemo(snapshot, tenant, featureNames);
  // (the request's array, or one shared by the requests that sent the same list: never changed)
  last = { snapshot, tenant, names: featureNames, resolved: r };
  return r;
}

function resolveMemo(snapshot: RegistrySnapshot, tenant: string, featureNames: readonly string[]): Resolved {
  let memo = resolutions.get(snapshot);
  if (memo === undefined) {
    memo = new Map();
    resolutions.set(snapshot, memo);
  }
  // tenants and references never hold U+0000 (a reference that did would not resolve)
  const id = `${tenant}\u0000${featureNames.join("\u0000")}`;
  let r = memo.get(id);
  if (r === undefined) {
    const resolved = resolveFeatures(snapshot, tenant, featureNames);
    r = { ...resolved, keys: resolved.refs.map((ref) => `${JSON.stringify(ref)}:`), featureIds: resolved.defs.map((d) => d.id) };
    if (memo.size >= RESOLUTIONS_MAX) memo.clear();
    memo.set(id, r);
  }
  return r;
}

/**
 * Resolves the features and reads the latest rows (entity-major: row e * nf + f), synchronously
 * when the online store holds every value in this process (the in-process cache,
 * {@link readLatestNow}); a promise otherwise. Throws the resolution's 400/404 (AppError) either way.
 */
function readNow(deps: Deps, tenant: string, entityIds: readonly string[], featureNames: readonly string[]): Lookup | Promise<Lookup> {
  const resolved = resolve(deps.registry.current, tenant, featureNames);
  const rows = readResolvedNow(deps, tenant, resolved, entityIds);
  if (Array.isArray(rows)) return lookupOf(deps, resolved, rows);
  return rows.then((r) => lookupOf(deps, resolved, r));
}

/** The value keys of a lookup, entity-major. */
function keysOf(resolved: Resolved, entityIds: readonly string[]): ValueKey[] {
  const ids = resolved.featureIds;
  const nf = ids.length;
  const keys: ValueKey[] = new Array(entityIds.length * nf);
  for (let e = 0; e < entityIds.length; e++) {
    for (let f = 0; f < nf; f++) keys[e * nf + f] = { feature_id: ids[f] as number, entity_id: entityIds[e] as string };
  }
  return keys;
}

/**
 * {@link readLatestNow} of a resolved lookup. An online store held in this process that reads
 * entities whole ({@link OnlineStore.getEntitiesNow}) is asked without a key object per value;
 * the keys are made only for a miss (the database) or a failure.
 */
function readResolvedNow(deps: Deps, tenant: string, resolved: Resolved, entityIds: readonly string[]): (StoredRow | null)[] | Promise<(StoredRow | null)[]> {
  const online = deps.stores.online;
  if (online.getEntitiesNow === undefined) return readLatestNow(deps, tenant, resolved.entityType, keysOf(resolved, entityIds));
  if (!online.capabilities.sharedAcrossProcesses) deps.stores.registry.pollNow?.();
  let cached: (CachedValue | undefined)[];
  try {
    cached = online.getEntitiesNow(tenant, resolved.entityType, entityIds, resolved.featureIds);
  } catch (err) {
    return unavailable(deps, keysOf(resolved, entityIds), err);
  }
  for (let i = 0; i < cached.length; i++) {
    if (cached[i] === undefined) return fill(deps, tenant, resolved.entityType, keysOf(resolved, entityIds), cached);
  }
  if (cached.length > 0) deps.metrics.countCache("hit", cached.length);
  return cached as CachedValue[];
}

function lookupOf(deps: Deps, resolved: Resolved, rows: (StoredRow | null)[]): Lookup {
  return { refs: resolved.refs, defs: resolved.defs, entityType: resolved.entityType, keys: resolved.keys, featureIds: resolved.featureIds, resolved, rows, now: deps.clock.now() };
}

/**
 * Counts the outcomes of a lookup (present / not_found / expired) and observes the age of the
 * present values: once per entity and event time (the values of an entity written together
 * share it), not once per value (a histogram observe per value was ~10% of a 100 x 10 lookup).
 */
function account(deps: Deps, l: Lookup, entities: number): void {
  const tally: Outcomes = { present: 0, notFound: 0, expired: 0 };
  const age = deps.metrics.servedValueAgeOf(l.entityType);
  for (let e = 0; e < entities; e++) accountEntity(l, e * l.defs.length, tally, age);
  deps.metrics.countLookups(tally.present, tally.notFound, tally.expired);
}

/** Outcomes of the values of a lookup, counted. */
interface Outcomes {
  present: number;
  notFound: number;
  expired: number;
}

/** {@link account} of the entity whose rows start at `base`. */
function accountEntity(l: Lookup, base: number, tally: Outcomes, age: { observe(seconds: number): void }): void {
  const nf = l.defs.length;
  let lastObserved = Number.NaN;
  for (let f = 0; f < nf; f++) {
    const row = l.rows[base + f];
    if (!row) {
      tally.notFound++;
      continue;
    }
    const ttl = (l.defs[f] as Definition).ttlMs;
    if (ttl !== null && row.event_time <= l.now - ttl) {
      tally.expired++;
      continue;
    }
    tally.present++;
    if (row.event_time !== lastObserved) {
      lastObserved = row.event_time;
      age.observe(Math.max(0, (l.now - row.event_time) / 1000));
    }
  }
}

/**
 * Looks up `featureNames` for each entity (in order). Throws AppError 400/404 for bad
 * references, 503 when neither the cache nor the database can answer.
 */
export async function lookupOnline(deps: Deps, tenant: string, entityIds: readonly string[], featureNames: readonly string[]): Promise<OnlineResult[]> {
  const l = await readNow(deps, tenant, entityIds, featureNames);
  account(deps, l, entityIds.length);
  const nf = l.defs.length;
  // rows handed out by the in-process cache keep their identity: memoise their JSON form
  const memo = deps.stores.online.capabilities.stableRows;
  const results: OnlineResult[] = new Array(entityIds.length);
  const served: ServedValue[] = new Array(nf);
  for (let e = 0; e < entityIds.length; e++) {
    for (let f = 0; f < nf; f++) served[f] = serveValue(l.defs[f] as Definition, l.rows[e * nf + f], l.now, memo);
    results[e] = { entity_id: entityIds[e] as string, ...renderResult(l.refs, served) };
  }
  return results;
}

/**
 * The same lookup as {@link lookupOnline}, answered as the JSON text of the response body (one
 * result object, or `{"results":[...]}` when `many`), built directly: no result objects to build
 * and serialise. Each stored value's JSON text is remembered in its row when a store in this
 * process holds it ({@link HeldRow}: the in-process cache and the Redis near cache hand out the
 * same row on every hit; rows read fresh from Redis or the database are rendered each time), and
 * the key and event-time fragments are memoised too. The text is exactly `JSON.stringify` of what
 * {@link lookupOnline} returns.
 *
 * Answered synchronously when every value is held in this process (the in-process cache: no
 * promise, no await on the hot path); a promise otherwise. Throws the resolution's 400/404
 * (AppError) synchronously.
 */
export function lookupOnlineJsonNow(deps: Deps, tenant: string, entityIds: readonly string[], featureNames: readonly string[], many: boolean): string | Promise<string> {
  const l = readNow(deps, tenant, entityIds, featureNames);
  if (l instanceof Promise) return l.then((looked) => renderJson(deps, looked, entityIds, many));
  return renderJson(deps, l, entityIds, many);
}

/** The response text of a lookup (see {@link lookupOnlineJsonNow}); counts its outcomes. */
function renderJson(deps: Deps, l: Lookup, entityIds: readonly string[], many: boolean): string {
  const nf = l.defs.length;
  const memo = deps.stores.online.capabilities.stableRows;
  const tally: Outcomes = { present: 0, notFound: 0, expired: 0 };
  const age = deps.metrics.servedValueAgeOf(l.entityType);
  let out = many ? '{"results":[' : "";
  for (let e = 0; e < entityIds.length; e++) {
    const entityId = entityIds[e] as string;
    const first = memo ? l.rows[e * nf] : null;
    const held = first instanceof HeldRow ? first : undefined;
    let text: string | undefined;
    if (held !== undefined) {
      const m = held.entity as EntityText | undefined;
      if (m !== undefined && m.resolved === l.resolved && m.entityId === entityId && sameEntity(m, l, e * nf)) {
        // counted from what the memo holds (the same rows, each expired or not as then): the
        // rows themselves, scattered over the heap, are not read again
        accountMemo(m, l.now, tally, age);
        text = m.text;
      }
    }
    if (text === undefined) {
      accountEntity(l, e * nf, tally, age);
      try {
        text = entityText(l, e, entityId, held);
      } catch (err) {
        // (a value that cannot be decoded: every outcome is still counted, as before the answer fails)
        for (let rest = e + 1; rest < entityIds.length; rest++) accountEntity(l, rest * nf, tally, age);
        deps.metrics.countLookups(tally.present, tally.notFound, tally.expired);
        throw err;
      }
    }
    out += e === 0 ? text : `,${text}`;
  }
  deps.metrics.countLookups(tally.present, tally.notFound, tally.expired);
  return many ? `${out}]}` : out;
}

/** {@link accountEntity} of an entity answered from its remembered text (see {@link sameEntity}). */
function accountMemo(m: EntityText, now: number, tally: Outcomes, age: { observe(seconds: number): void }): void {
  const times = m.times;
  let lastObserved = Number.NaN;
  for (let f = 0; f < times.length; f++) {
    const t = times[f] as number;
    if (Number.isNaN(t)) {
      tally.notFound++;
      continue;
    }
    if (m.expired[f]) {
      tally.expired++;
      continue;
    }
    tally.present++;
    if (t !== lastObserved) {
      lastObserved = t;
      age.observe(Math.max(0, (now - t) / 1000));
    }
  }
}

/** The JSON text of entity `e`'s result in `l`, remembered in its first row when a store holds that row (`held`). */
function entityText(l: Lookup, e: number, entityId: string, held: HeldRow | undefined): string {
  const nf = l.defs.length;
  const keys = l.keys;
  let features = "";
  let metadata = "";
  for (let f = 0; f < nf; f++) {
    const def = l.defs[f] as Definition;
    const row = l.rows[e * nf + f];
    const sep = f === 0 ? "" : ",";
    const key = keys[f] as string;
    if (!row) {
      features += `${sep}${key}null`;
      metadata += `${sep}${key}{"status":"not_found","event_time":null}`;
    } else if (def.ttlMs !== null && row.event_time <= l.now - def.ttlMs) {
      features += `${sep}${key}null`;
      metadata += `${sep}${key}{"status":"expired","event_time":${eventTimeJson(row.event_time)}}`;
    } else {
      features += `${sep}${key}${valueJson(def, row)}`;
      metadata += `${sep}${key}{"status":"present","event_time":${eventTimeJson(row.event_time)}}`;
    }
  }
  const text = `{"entity_id":${JSON.stringify(entityId)},"features":{${features}},"metadata":{${metadata}}}`;
  if (held === undefined) return text;
  const flatText = flat(text);
  const times = new Float64Array(nf);
  for (let f = 0; f < nf; f++) times[f] = l.rows[e * nf + f]?.event_time ?? Number.NaN;
  const m: EntityText = { resolved: l.resolved, entityId, rows: l.rows.slice(e * nf, e * nf + nf), times, expired: expiredOf(l, e * nf), text: flatText };
  held.entity = m;
  return flatText;
}

/**
 * The JSON text of one entity's result, remembered in its first row ({@link HeldRow}: rows handed
 * out by the in-process cache and the Redis near cache keep their identity, and the memo goes
 * with the row when the store drops it; a field, not a WeakMap: see HeldRow). It is reused only
 * for the same resolution (tenant, feature references, snapshot), the same entity id, the very
 * same row (or absence) for every feature and the same expiry of each: everything the text is
 * made of. A model server asks for the same entities over and over; building this text was about
 * 40% of the CPU of an online 100 x 10 lookup.
 */
interface EntityText {
  resolved: Resolved;
  entityId: string;
  rows: (StoredRow | null)[];
  /** Per feature: its row's event time (NaN: no row), read from here rather than from the rows. */
  times: Float64Array;
  /** Per feature: whether its row was expired (the one part of the text that depends on `now`). */
  expired: boolean[];
  text: string;
}

/**
 * `text` as one contiguous string. A string built by concatenation is a tree of its pieces until
 * something reads it whole; a remembered text would otherwise be walked piece by piece on every
 * answer it goes into (encoding a 100-entity answer made of such trees took several times as long).
 * A search reads it whole, and the engine keeps the contiguous form (the check itself cannot fail).
 */
function flat(text: string): string {
  // (JSON text never holds a raw U+0000: JSON.stringify escapes it)
  if (text.includes("\u0000")) throw new Error("an online answer's JSON text holds a raw U+0000");
  return text;
}

/** Whether each row of the entity at `base` is expired at `l.now` (the test of {@link lookupOnlineJsonNow}). */
function expiredOf(l: Lookup, base: number): boolean[] {
  const nf = l.defs.length;
  const out = new Array<boolean>(nf);
  for (let f = 0; f < nf; f++) {
    const row = l.rows[base + f];
    const ttl = (l.defs[f] as Definition).ttlMs;
    out[f] = row != null && ttl !== null && row.event_time <= l.now - ttl;
  }
  return out;
}

/** Whether a remembered entity text still holds: the same rows, each expired or not as then. */
function sameEntity(m: EntityText, l: Lookup, base: number): boolean {
  const nf = l.defs.length;
  for (let f = 0; f < nf; f++) {
    const row = l.rows[base + f];
    if (row !== m.rows[f]) return false;
    const ttl = (l.defs[f] as Definition).ttlMs;
    // (the same row: its event time is the one remembered)
    if (row != null && ttl !== null && (m.times[f] as number) <= l.now - ttl !== m.expired[f]) return false;
  }
  return true;
}

/** JSON text of a stored value, remembered in the row when a store holds it (see {@link lookupOnlineJsonNow}). */
function valueJson(def: Definition, row: StoredRow): string {
  if (!(row instanceof HeldRow)) return JSON.stringify(toJsonValue(def.type, decodeValue(def.type, row.value))) ?? "null";
  let v = row.json;
  if (v === undefined) {
    v = JSON.stringify(toJsonValue(def.type, decodeHeld(def, row))) ?? "null";
    row.json = v;
  }
  return v;
}

/** JSON text of an event time, with a one-entry memo (the values of an entity usually share one). */
let lastMs = Number.NaN;
let lastJson = "";
function eventTimeJson(ms: number): string {
  if (ms !== lastMs) {
    lastJson = `"${new Date(ms).toISOString()}"`;
    lastMs = ms;
  }
  return lastJson;
}

/** Latest rows for keys: cache first, then the database for misses (written back to the cache). */
export async function readLatest(deps: Deps, tenant: string, entityType: string, keys: ValueKey[]): Promise<(StoredRow | null)[]> {
  return readLatestNow(deps, tenant, entityType, keys);
}

/**
 * {@link readLatest}, answered synchronously (an array, no promise) when the online store is
 * held in this process ({@link OnlineStore.getManyNow}) and holds every key; a promise otherwise.
 */
export function readLatestNow(deps: Deps, tenant: string, entityType: string, keys: ValueKey[]): (StoredRow | null)[] | Promise<(StoredRow | null)[]> {
  const online = deps.stores.online;
  // A private (in-process) online store forgets what other processes wrote: check their commits
  // first, so that a value another process (another `serve` worker, a CLI) wrote is served at
  // once. For SQLite one PRAGMA data_version when nothing changed.
  if (!online.capabilities.sharedAcrossProcesses) deps.stores.registry.pollNow?.();
  let cached: (CachedValue | undefined)[] | Promise<(CachedValue | undefined)[]>;
  try {
    cached = online.getManyNow !== undefined ? online.getManyNow(tenant, entityType, keys) : online.getMany(tenant, entityType, keys);
  } catch (err) {
    return unavailable(deps, keys, err);
  }
  if (Array.isArray(cached)) return fill(deps, tenant, entityType, keys, cached);
  return cached.then(
    (c) => fill(deps, tenant, entityType, keys, c),
    (err: unknown) => unavailable(deps, keys, err),
  );
}

/** The online store failed: the database answers (see {@link readLatest}). */
function unavailable(deps: Deps, keys: ValueKey[], err: unknown): Promise<(StoredRow | null)[]> {
  deps.metrics.countCache("error", keys.length);
  deps.log.debug({ err }, "online store unavailable; reading the database");
  return dbCall(deps, "online lookup", () => deps.stores.offline.getLatest(keys));
}

/** The rows of `cached` (the online store's answer), the misses read from the database (a promise then) and written back. */
function fill(deps: Deps, tenant: string, entityType: string, keys: ValueKey[], cached: (CachedValue | undefined)[]): (StoredRow | null)[] | Promise<(StoredRow | null)[]> {
  let missIdx: number[] | undefined;
  for (let i = 0; i < cached.length; i++) if (cached[i] === undefined) (missIdx ??= []).push(i);
  const hits = keys.length - (missIdx?.length ?? 0);
  if (hits > 0) deps.metrics.countCache("hit", hits);
  if (missIdx === undefined) return cached as CachedValue[];
  return fillMisses(deps, tenant, entityType, keys, cached, missIdx);
}

async function fillMisses(deps: Deps, tenant: string, entityType: string, keys: ValueKey[], cached: (CachedValue | undefined)[], missIdx: number[]): Promise<(StoredRow | null)[]> {
  deps.metrics.countCache("miss", missIdx.length);
  const missKeys = missIdx.map((i) => keys[i] as ValueKey);
  const fromDb = await dbCall(deps, "online lookup", () => deps.stores.offline.getLatest(missKeys));
  const out = cached as (StoredRow | null)[];
  for (let j = 0; j < missIdx.length; j++) out[missIdx[j] as number] = fromDb[j] ?? null;
  const fill = missKeys.map((key, j) => ({ key, value: fromDb[j] ?? null }));
  deps.stores.online.putMany(tenant, entityType, fill).catch((err: unknown) => deps.log.debug({ err }, "cache fill failed"));
  return out;
}
