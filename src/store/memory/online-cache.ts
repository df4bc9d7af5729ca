/**
 * The in-process online cache: a bounded LRU of latest values in front of the database, used
 * when no REDIS_URL is configured. Writes through this process update it; writes by other
 * processes clear it (the database's change feed says when).
 */
import { LRUCache } from "lru-cache";
import type { CachedValue, OnlineCache, StoredRow, ValueKey } from "../types.ts";

/** Sentinel for a negative entry (LRUCache cannot hold `null`). */
const ABSENT = Symbol("absent");
type Entry = StoredRow | typeof ABSENT;

function newer(a: StoredRow, b: StoredRow): boolean {
  return a.event_time > b.event_time || (a.event_time === b.event_time && a.seq > b.seq);
}

/** {@link OnlineCache} held in this process. */
export class InProcessCache implements OnlineCache {
  readonly kind = "in_process" as const;
  private readonly lru: LRUCache<string, Entry>;

  /** @param maxEntries how many (feature version, entity) values to keep at most */
  constructor(maxEntries: number) {
    this.lru = new LRUCache<string, Entry>({ max: maxEntries });
  }

  private static key(k: ValueKey): string {
    return `${k.feature_id}\u0000${k.entity_id}`;
  }

  async getMany(_tenant: string, _entityType: string, keys: ValueKey[]): Promise<(CachedValue | undefined)[]> {
    return keys.map((k) => {
      const e = this.lru.get(InProcessCache.key(k));
      return e === ABSENT ? null : e;
    });
  }

  async putMany(_tenant: string, _entityType: string, entries: { key: ValueKey; value: CachedValue }[]): Promise<void> {
    for (const { key, value } of entries) {
      const k = InProcessCache.key(key);
      const cur = this.lru.get(k);
      if (value === null) {
        if (cur === undefined) this.lru.set(k, ABSENT);
      } else if (cur === undefined || cur === ABSENT || newer(value, cur)) {
        this.lru.set(k, value);
      }
    }
  }

  async clear(): Promise<void> {
    this.lru.clear();
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    this.lru.clear();
  }
}
