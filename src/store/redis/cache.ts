/**
 * The Redis online cache (REDIS_URL), shared by every server and worker process.
 *
 * Layout (see format.ts): one hash per tenant + entity type + entity id, one field per feature
 * version, values packed as `[event_time, seq, bytes]` or a negative marker. A read is one
 * HMGET per entity; a write is one Lua compare-and-set per entity. All the commands of one
 * call go out together: node-redis pipelines whatever is sent in the same tick on one
 * connection, and a cluster client sends each node its share in parallel, so a call costs one
 * round trip whatever the number of entities.
 *
 * Near cache (single server; see near.ts): the entries read are also kept in process, exact
 * through Redis client tracking; a lookup then costs one round trip on the tracking connection
 * (a shared `PING` when everything is held, else the `HMGET`s of what is not, read on that
 * connection) and hands out the same row objects for as long as they are current
 * (`stableRows`: the online path memoises their JSON).
 *
 * Outage safety: a value the database accepted must never be hidden behind an older cached
 * one. Every key carries the cache *generation* (`<ns>:gen`):
 * - A write the cache could not take (Redis down, timeout, error) makes this process *dirty*:
 *   its reads throw (callers read the database) and its writes are refused, until Redis answers
 *   again (every master, on a cluster); then it advances the generation, which makes every
 *   older entry unreachable at once (old keys simply expire), and is clean again.
 * - Every process polls the generation every `pollMs` and follows it, so other processes stop
 *   reading the old generation within about `pollMs`. A write re-reads the generation after
 *   its scripts ran (on one server: in the same pipeline, behind them) and, if it changed,
 *   writes again under the new one, so a write racing a bump is never lost either.
 * - After any connection failure a process keeps reading the database for `quarantineMs`
 *   after Redis answers again: long enough for a dirty process that lost a write during the
 *   same outage to reconnect and advance the generation first.
 * - A Redis that lost its data (generation key missing) starts a new generation from the
 *   wall clock (at least the last one this process saw + 1), so a generation number is never
 *   reused and keys of an abandoned generation can never come back.
 */
import type { Logger } from "../../log.ts";
import type { Metrics } from "../../metrics.ts";
import { TimeoutError, withTimeout } from "../../lib/timeout.ts";
import type { CachedValue, OnlineCapabilities, OnlineStore, ValueKey } from "../types.ts";
import { RedisConnection, RedisUnavailableError } from "./connection.ts";
import { assertNamespace, cachedSize, DEFAULT_NAMESPACE, decodeCached, entityKey, entityKeyPrefix, escapePart, generationKey, writeCached } from "./format.ts";
import { CacheGeneration } from "./generation.ts";
import { NearCache, Tracker } from "./near.ts";
import { CAS_SCRIPT, CAS_SHA, evalScript } from "./scripts.ts";

const DAY_SECONDS = 86_400;
/**
 * Entities per compare-and-set script run on one server, and fields per run at most. A run
 * blocks the server while it runs, online reads included: 64 entities of 4 fields take about
 * 1 ms (256 took 4.5 ms), and already save most of the client's cost of one run per entity.
 * Fields bound it for wide entities: with 512, a write of 2,000 records x 10 features ran 40
 * scripts of 5.1 ms each (Redis `INFO commandstats`, session 9, busy machine), and an online
 * read arriving meanwhile waited for the rest of one; 128 keeps a run near a millisecond.
 */
const SCRIPT_KEYS = 64;
const SCRIPT_FIELDS = 128;
/** Longest key expiry we set (EXPIRE rejects absurd values; ten years is "forever" here). */
const MAX_EXPIRE_SECONDS = 3650 * DAY_SECONDS;

/**
 * The one argument of a CAS script run (see CAS_SCRIPT): per key, its expiry and field count,
 * then per field its name and stored form (format.ts's `writeCached`, the bytes `encodeCached` returns). One buffer per run
 * instead of four arguments per field (measured: the client's encoding of those was a fifth of
 * a bulk load's CPU).
 */
export class CasArgs {
  private buf = Buffer.allocUnsafe(1 << 16);
  private at = 0;

  /** Bytes written so far. */
  get size(): number {
    return this.at;
  }

  private room(n: number): Buffer {
    if (this.at + n > this.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.at + n));
      this.buf.copy(grown, 0, 0, this.at);
      this.buf = grown;
    }
    return this.buf;
  }

  /** Starts a key: the seconds it must live at least (less a 64th: see CAS_SCRIPT), and how many fields follow. */
  key(ttlSeconds: number, fields: number): void {
    const b = this.room(8);
    b.writeUInt32BE(ttlSeconds, this.at);
    b.writeUInt32BE(fields, this.at + 4);
    this.at += 8;
  }

  /** One field: the feature id, and the value (null: a negative entry) in its stored form. */
  field(featureId: number, value: CachedValue): void {
    const name = String(featureId);
    const size = cachedSize(value);
    const b = this.room(2 + name.length + 4 + size);
    b.writeUInt16BE(name.length, this.at);
    b.write(name, this.at + 2, "latin1");
    this.at += 2 + name.length;
    b.writeUInt32BE(size, this.at);
    writeCached(b, this.at + 4, value);
    this.at += 4 + size;
  }

  /** The bytes written (a copy), and starts over. */
  take(): Buffer {
    const out = Buffer.allocUnsafe(this.at);
    this.buf.copy(out, 0, 0, this.at);
    this.at = 0;
    return out;
  }
}

/** Options of {@link RedisCache.connect}. */
export interface RedisCacheOptions {
  /** `redis://` / `rediss://` URL, or several comma-separated (a cluster). */
  url: string;
  /** Use the cluster client even for a single URL. */
  cluster?: boolean;
  log: Logger;
  /** Redis-specific metrics are added to `metrics.registry`. */
  metrics: Metrics;
  /** Bound of every cache call, ms. */
  timeoutMs: number;
  /** Key namespace (default `fs`): keys are `<ns>:gen` and `<ns>:{...}`. */
  namespace?: string;
  /** Expiry of entity keys whose entries carry no TTL, seconds (default 7 days). */
  defaultTtlSeconds?: number;
  /** How often the generation is polled, ms (default 250). */
  pollMs?: number;
  /** Longest pause between reconnect attempts, ms (default 1000). */
  reconnectMaxMs?: number;
  /** How long reads stay on the database after Redis answers again, ms (default reconnectMaxMs + 2 pollMs). */
  quarantineMs?: number;
  /** Values the near cache holds at most (default 1,000,000; 0: no near cache). A cluster has none. */
  nearMaxValues?: number;
}

/** {@link OnlineStore} in Redis (single server or cluster); see the module comment. */
export class RedisCache implements OnlineStore {
  readonly name = "redis";
  readonly capabilities: OnlineCapabilities;

  private readonly ns: string;
  private readonly timeoutMs: number;
  private readonly defaultTtlSeconds: number;
  /** the generation protocol (./generation.ts) */
  private readonly protocol: CacheGeneration;
  private readonly conn: RedisConnection;
  /** The near cache (none on a cluster), and its tracking connection once a lookup needed it. */
  private readonly near: NearCache | undefined;
  private tracker: Tracker | undefined;
  private readonly url: string;
  private readonly reconnectMaxMs: number;
  private readonly log: Logger;
  /** The key prefix of the last lookup, and what it was made of. */
  private lastPrefix = { gen: -1, tenant: "", entityType: "", prefix: "" };

  private constructor(opts: RedisCacheOptions) {
    this.ns = opts.namespace ?? DEFAULT_NAMESPACE;
    assertNamespace(this.ns);
    this.timeoutMs = opts.timeoutMs;
    const ttl = opts.defaultTtlSeconds ?? 7 * DAY_SECONDS;
    if (!(ttl > 0)) throw new Error(`defaultTtlSeconds must be > 0, got ${ttl}`);
    this.defaultTtlSeconds = Math.min(Math.ceil(ttl), MAX_EXPIRE_SECONDS);
    const pollMs = opts.pollMs ?? 250;
    const reconnectMaxMs = opts.reconnectMaxMs ?? 1000;
    this.reconnectMaxMs = reconnectMaxMs;
    this.log = opts.log;
    const urls = opts.url
      .split(",")
      .map((u) => u.trim())
      .filter((u) => u !== "");
    this.url = urls[0] ?? "";
    const cluster = (opts.cluster ?? false) || urls.length > 1;
    const nearMax = opts.nearMaxValues ?? 1_000_000;
    this.near = !cluster && nearMax > 0 ? new NearCache(nearMax) : undefined;
    this.capabilities = { sharedAcrossProcesses: true, stableRows: this.near !== undefined };
    this.protocol = new CacheGeneration({
      key: generationKey(this.ns),
      log: opts.log,
      timeoutMs: opts.timeoutMs,
      pollMs,
      quarantineMs: opts.quarantineMs ?? reconnectMaxMs + 2 * pollMs,
      metrics: opts.metrics.redisCache,
      onChange: () => this.near?.flush(),
    });
    this.conn = RedisConnection.open({
      urls,
      cluster: opts.cluster ?? false,
      connectTimeoutMs: Math.max(opts.timeoutMs, 500),
      reconnectMaxMs,
      maxPending: 100_000,
      events: { onError: (err) => this.protocol.connectionFailed(err), onReady: () => this.protocol.connectionReady() },
    });
    this.protocol.attach(this.conn);
  }

  /**
   * Connects to Redis and reads the current generation. Waits up to `timeoutMs` for Redis;
   * when it does not answer in time the cache is returned anyway (reads fall back to the
   * database) and keeps connecting in the background.
   */
  static async connect(opts: RedisCacheOptions): Promise<RedisCache> {
    const cache = new RedisCache(opts);
    await cache.protocol.start(await cache.protocol.firstConnection(opts.timeoutMs));
    if (!cache.available) opts.log.warn({ cluster: cache.conn.isCluster }, "Redis cache not reachable at start; reading the database until it answers");
    return cache;
  }

  /** The generation this process reads and writes. */
  get generation(): number {
    return this.protocol.current;
  }

  /** True when reads go to Redis (not dirty, not quarantined, not closed). */
  get available(): boolean {
    return this.protocol.available;
  }

  /** True while lookups are answered from the near cache (its tracking connection subscribed). */
  get nearCacheActive(): boolean {
    return this.tracker?.ready ?? false;
  }

  keyOf(tenant: string, entityType: string, entityId: string): string {
    return entityKey(this.ns, this.protocol.current, tenant, entityType, entityId);
  }

  async getMany(tenant: string, entityType: string, keys: ValueKey[]): Promise<(CachedValue | undefined)[]> {
    if (keys.length === 0) return [];
    if (!this.protocol.available) throw this.unavailable();
    const near = this.near;
    if (near !== undefined) {
      const t = (this.tracker ??= this.startTracker(near));
      if (t.ready) {
        // Exact once one reply of the tracking connection to a command sent after the lookup
        // started came (near.ts): what the near cache lacks is read on that connection, whose
        // replies are then that wait; a lookup that lacks nothing waits for a `PING`.
        const prefix = this.prefixOf(tenant, entityType);
        const out = new Array<CachedValue | undefined>(keys.length);
        // taken before the wait; still current after it if nothing was invalidated meanwhile
        const seen = near.changes;
        const missing = near.hits(prefix, keys, out);
        try {
          if (missing !== undefined) return await this.readNear(t, near, prefix, keys, out, missing, seen);
          await t.barrier();
          if (!this.protocol.available) throw this.unavailable();
          if (near.changes === seen) return out;
          const again = near.hits(prefix, keys, out);
          // every value held: no second promise (the barrier was the one wait)
          if (again === undefined) return out;
          return await this.readNear(t, near, prefix, keys, out, again, near.changes);
        } catch (err) {
          // Redis does not answer: the database answers (not a second wait on another read)
          if (err instanceof TimeoutError) {
            this.protocol.commandFailed(err);
            throw err;
          }
          if (err instanceof RedisUnavailableError) throw err;
          // the connection dropped (the tracker forgot the near cache and reconnects) or Redis
          // refused the read: read Redis directly
        }
        if (!this.protocol.available) throw this.unavailable();
      }
    }
    return this.read(this.prefixOf(tenant, entityType), keys);
  }

  private unavailable(): RedisUnavailableError {
    return new RedisUnavailableError(this.protocol.isClosed ? "Redis cache is closed" : "Redis cache is unavailable");
  }

  /**
   * The rest of a near-cache lookup: `keys[i]` for every i of `missing` read on the tracking
   * connection into `out`; every other value of `out` (from the near cache, taken when its
   * `changes` were `seen`) is taken again after the reply if something was invalidated since,
   * and read too when it was.
   */
  private async readNear(t: Tracker, near: NearCache, prefix: string, keys: ValueKey[], out: (CachedValue | undefined)[], missing: number[], seen: number): Promise<(CachedValue | undefined)[]> {
    // `read[i]`: out[i] was read from Redis after the lookup started (final)
    const read = new Uint8Array(keys.length);
    let taken = seen;
    for (let idx: number[] | undefined = missing; idx !== undefined; ) {
      if (!t.ready) throw new Error("Redis near cache tracking lost");
      const got = await t.read(prefix, keys, idx);
      if (!this.protocol.available) throw this.unavailable();
      for (let j = 0; j < idx.length; j++) {
        const i = idx[j] as number;
        out[i] = got[j];
        read[i] = 1;
      }
      if (near.changes === taken) break;
      taken = near.changes;
      idx = near.hits(prefix, keys, out, read);
    }
    return out;
  }

  private startTracker(near: NearCache): Tracker {
    return new Tracker({ url: this.url, prefix: `${this.ns}:{`, timeoutMs: this.timeoutMs, reconnectMaxMs: this.reconnectMaxMs, log: this.log, near });
  }

  private prefixOf(tenant: string, entityType: string): string {
    const gen = this.protocol.current;
    const p = this.lastPrefix;
    if (p.gen !== gen || p.tenant !== tenant || p.entityType !== entityType) {
      this.lastPrefix = { gen, tenant, entityType, prefix: entityKeyPrefix(this.ns, gen, tenant, entityType) };
    }
    return this.lastPrefix.prefix;
  }

  /** One HMGET per entity (the lookups without a near cache, or while it is not tracking). */
  private async read(prefix: string, keys: ValueKey[]): Promise<(CachedValue | undefined)[]> {
    const groups = new Map<string, { fields: string[]; idx: number[] }>();
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i] as ValueKey;
      let g = groups.get(k.entity_id);
      if (g === undefined) {
        g = { fields: [], idx: [] };
        groups.set(k.entity_id, g);
      }
      g.fields.push(String(k.feature_id));
      g.idx.push(i);
    }
    const sent: Promise<unknown>[] = [];
    for (const [entityId, g] of groups) {
      const key = `${prefix}${escapePart(entityId)}}`;
      sent.push(this.conn.send(key, ["HMGET", key, ...g.fields], { readonly: true, buffers: true }));
    }
    let replies: unknown[];
    try {
      replies = await withTimeout(Promise.all(sent), this.timeoutMs, "Redis cache read");
    } catch (err) {
      this.protocol.commandFailed(err);
      throw err;
    }
    const out: (CachedValue | undefined)[] = new Array<CachedValue | undefined>(keys.length).fill(undefined);
    let r = 0;
    for (const g of groups.values()) {
      const reply = replies[r++];
      if (!Array.isArray(reply) || reply.length !== g.idx.length) throw new Error("unexpected HMGET reply from Redis");
      for (let j = 0; j < g.idx.length; j++) {
        const v: unknown = reply[j];
        out[g.idx[j] as number] = v instanceof Uint8Array ? decodeCached(v) : undefined;
      }
    }
    return out;
  }

  async putMany(tenant: string, entityType: string, entries: { key: ValueKey; value: CachedValue; ttlSeconds?: number }[]): Promise<void> {
    if (entries.length === 0) return;
    if (this.protocol.isClosed) throw new RedisUnavailableError("Redis cache is closed");
    // Until the generation moves on, nothing written now could be trusted later.
    if (this.protocol.isDirty) throw new RedisUnavailableError("Redis cache is recovering from a lost write; not written");
    // Per entity and feature only the entry the compare-and-set would end with is sent: the
    // greatest (event_time, seq), or a negative marker when there is no value (a bulk write
    // offers every row of a chunk; most are superseded within it).
    const groups = new Map<string, { fields: Map<number, CachedValue>; ttl: number }>();
    for (const { key, value, ttlSeconds } of entries) {
      let g = groups.get(key.entity_id);
      if (g === undefined) {
        g = { fields: new Map(), ttl: 0 };
        groups.set(key.entity_id, g);
      }
      const ttl = ttlSeconds !== undefined && Number.isFinite(ttlSeconds) && ttlSeconds > 0 ? Math.min(Math.ceil(ttlSeconds), MAX_EXPIRE_SECONDS) : this.defaultTtlSeconds;
      if (ttl > g.ttl) g.ttl = ttl;
      const had = g.fields.get(key.feature_id);
      if (had === undefined || (value !== null && (had === null || value.event_time > had.event_time || (value.event_time === had.event_time && value.seq > had.seq)))) g.fields.set(key.feature_id, value);
    }
    let gen = this.protocol.current;
    try {
      for (let attempt = 1; ; attempt++) {
        const current = await withTimeout(this.putInGeneration(gen, tenant, entityType, groups), this.timeoutMs, "Redis cache write");
        if (current === gen) return;
        // The generation moved while we wrote: what we wrote is unreachable, write it again.
        this.protocol.adopt(current);
        if (attempt >= 3) throw new Error("Redis cache generation kept changing during a write");
        gen = current;
      }
    } catch (err) {
      this.protocol.writeLost(err);
      throw err;
    }
  }

  async clear(): Promise<void> {
    try {
      this.protocol.cleared(await withTimeout(this.protocol.script(true), this.timeoutMs, "Redis cache clear"));
    } catch (err) {
      this.protocol.writeLost(err);
      throw err;
    }
  }

  async ping(): Promise<void> {
    await withTimeout(this.conn.pingAll(), Math.min(this.timeoutMs, 1000), "Redis PING");
  }

  async close(): Promise<void> {
    if (this.protocol.isClosed) return;
    this.protocol.close();
    this.tracker?.close();
    this.near?.flush();
    await this.conn.close(1000);
  }

  /**
   * Runs the CAS script for every entity under generation `gen`, then reads the generation
   * again; returns what it is now.
   */
  private async putInGeneration(gen: number, tenant: string, entityType: string, groups: Map<string, { fields: Map<number, CachedValue>; ttl: number }>): Promise<number> {
    const prefix = entityKeyPrefix(this.ns, gen, tenant, entityType);
    const writes: Promise<boolean>[] = [];
    // On one server, up to SCRIPT_KEYS entities per script run; on a cluster each entity's
    // hash has its own slot, so one run each.
    const perCall = this.conn.isCluster ? 1 : SCRIPT_KEYS;
    let keys: string[] = [];
    let fields = 0;
    const args = new CasArgs();
    const flush = () => {
      writes.push(evalScript(this.conn, CAS_SHA, CAS_SCRIPT, keys, [args.take()]).then((r) => r.fellBack));
      keys = [];
      fields = 0;
    };
    for (const [entityId, g] of groups) {
      keys.push(`${prefix}${escapePart(entityId)}}`);
      args.key(g.ttl, g.fields.size);
      for (const [featureId, value] of g.fields) args.field(featureId, value);
      fields += g.fields.size;
      if (keys.length >= perCall || fields >= SCRIPT_FIELDS) flush();
    }
    if (keys.length > 0) flush();
    // On one server a read queued behind the scripts on the same connection runs after them.
    // Across cluster nodes there is no such order, and a script re-sent as EVAL after NOSCRIPT
    // runs after that read: then read again once the writes are done.
    const inline = this.conn.isCluster ? undefined : this.protocol.script(false);
    inline?.catch(() => undefined);
    const fellBack = await Promise.all(writes);
    if (inline !== undefined && !fellBack.includes(true)) return inline;
    return this.protocol.script(false);
  }
}
