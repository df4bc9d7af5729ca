/**
 * The in-process online cache: a bounded LRU of latest values in front of the database, used
 * when no REDIS_URL is configured. Writes through this process update it; writes by other
 * processes make it forget the entities they changed, or everything when the database's change
 * feed cannot name them.
 *
 * Entity-major: one LRU entry per (tenant, entity type, entity id) holding a Map from feature
 * version id to value, sized by its number of values. A lookup of 10 features of one entity is
 * one string key and one LRU touch instead of ten.
 */
import { LRUCache } from "lru-cache";
import { heldRow, type HeldRow } from "../held-row.ts";
import type { CachedValue, EntityRef, OnlineCapabilities, OnlineStore, StoredRow, ValueKey } from "../types.ts";

/** Sentinel for a negative entry (LRUCache cannot hold `null`). */
const ABSENT = Symbol("absent");
/** A held value is a {@link HeldRow} (the online path memoises its JSON in it), whatever the caller offered. */
type Entry = HeldRow | typeof ABSENT;
type Fields = Map<number, Entry>;

function newer(a: StoredRow, b: StoredRow): boolean {
  return a.event_time > b.event_time || (a.event_time === b.event_time && a.seq > b.seq);
}

/** {@link OnlineStore} held in this process. */
export class InProcessCache implements OnlineStore {
  readonly name = "in_process";
  readonly capabilities: OnlineCapabilities = { sharedAcrossProcesses: false, stableRows: true };
  private readonly lru: LRUCache<string, Fields>;

  /** @param maxEntries how many (feature version, entity) values to keep at most */
  constructor(maxEntries: number) {
    this.lru = new LRUCache<string, Fields>({ maxSize: maxEntries, sizeCalculation: (m) => Math.max(1, m.size) });
  }

  async getMany(tenant: string, entityType: string, keys: ValueKey[]): Promise<(CachedValue | undefined)[]> {
    return this.getManyNow(tenant, entityType, keys);
  }

  getManyNow(tenant: string, entityType: string, keys: ValueKey[]): (CachedValue | undefined)[] {
    const prefix = `${tenant}\u0000${entityType}\u0000`;
    const out = new Array<CachedValue | undefined>(keys.length);
    let lastId: string | undefined;
    let fields: Fields | undefined;
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i] as ValueKey;
      if (k.entity_id !== lastId) {
        lastId = k.entity_id;
        fields = this.lru.get(prefix + k.entity_id);
      }
      const e = fields?.get(k.feature_id);
      out[i] = e === ABSENT ? null : e;
    }
    return out;
  }

  getEntitiesNow(tenant: string, entityType: string, entityIds: readonly string[], featureIds: readonly number[]): (CachedValue | undefined)[] {
    const prefix = `${tenant}\u0000${entityType}\u0000`;
    const nf = featureIds.length;
    const out = new Array<CachedValue | undefined>(entityIds.length * nf);
    for (let e = 0; e < entityIds.length; e++) {
      const fields = this.lru.get(prefix + (entityIds[e] as string));
      for (let f = 0; f < nf; f++) {
        const v = fields?.get(featureIds[f] as number);
        out[e * nf + f] = v === ABSENT ? null : v;
      }
    }
    return out;
  }

  async putMany(tenant: string, entityType: string, entries: { key: ValueKey; value: CachedValue }[]): Promise<void> {
    const prefix = `${tenant}\u0000${entityType}\u0000`;
    let i = 0;
    while (i < entries.length) {
      const id = (entries[i] as (typeof entries)[number]).key.entity_id;
      const lkey = prefix + id;
      const fields: Fields = this.lru.peek(lkey) ?? new Map();
      for (; i < entries.length && (entries[i] as (typeof entries)[number]).key.entity_id === id; i++) {
        const { key, value } = entries[i] as (typeof entries)[number];
        const cur = fields.get(key.feature_id);
        if (value === null) {
          if (cur === undefined) fields.set(key.feature_id, ABSENT);
        } else if (cur === undefined || cur === ABSENT || newer(value, cur)) {
          fields.set(key.feature_id, heldRow(value));
        }
      }
      this.lru.set(lkey, fields); // (re)computes its size
    }
  }

  async clear(): Promise<void> {
    this.lru.clear();
  }

  invalidateEntities(entities: readonly EntityRef[]): void {
    for (const e of entities) this.lru.delete(`${e.tenant}\u0000${e.entity_type}\u0000${e.entity_id}`);
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    this.lru.clear();
  }
}
