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
import { createHash } from "node:crypto";
import { Counter, Gauge, type Registry } from "prom-client";
import { ErrorReply, type RedisArgument } from "redis";
import type { Logger } from "../../log.ts";
import type { Metrics } from "../../metrics.ts";
import { TimeoutError, withTimeout } from "../../lib/timeout.ts";
import type { CachedValue, OnlineCapabilities, OnlineStore, ValueKey } from "../types.ts";
import { RedisConnection, RedisUnavailableError } from "./connection.ts";
import { assertNamespace, DEFAULT_NAMESPACE, decodeCached, encodeCached, entityKey, entityKeyPrefix, escapePart, generationKey, NEGATIVE_MARKER } from "./format.ts";

/**
 * Compare-and-set of one entity hash. KEYS[1]: the hash. ARGV[1]: seconds the key must live
 * at least. Then per field: name, event_time, seq, packed value (event_time "" marks a
 * negative entry, written only where the field is absent). Returns the number of fields set.
 */
const CAS_SCRIPT = `
local key = KEYS[1]
local neg = string.char(192)
local fmts = {[0xcb] = '>d', [0xca] = '>f', [0xcc] = '>B', [0xcd] = '>H', [0xce] = '>I4', [0xcf] = '>I8',
  [0xd0] = '>b', [0xd1] = '>h', [0xd2] = '>i4', [0xd3] = '>i8'}
-- One MessagePack number at pos: value and the position after it (nil if not a number).
-- cmsgpack cannot read the bin type of the value bytes, and need not: only the header counts.
local function num(s, pos)
  local b = string.byte(s, pos)
  if b == nil then return nil end
  if b <= 0x7f then return b, pos + 1 end
  if b >= 0xe0 then return b - 256, pos + 1 end
  local fmt = fmts[b]
  if fmt == nil then return nil end
  return struct.unpack(fmt, s, pos + 1)
end
-- (event_time, seq) of a stored value, or nil when it is not one.
local function header(s)
  if string.byte(s, 1) ~= 0x93 then return nil end
  local et, p = num(s, 2)
  if et == nil then return nil end
  local seq = num(s, p)
  if seq == nil then return nil end
  return et, seq
end
local set = 0
for i = 2, #ARGV, 4 do
  local field = ARGV[i]
  local et = tonumber(ARGV[i + 1])
  if et == nil then
    set = set + redis.call('HSETNX', key, field, ARGV[i + 3])
  else
    local cur = redis.call('HGET', key, field)
    local replace = (not cur) or cur == neg
    if not replace then
      local ok, cet, cseq = pcall(header, cur)
      if ok and cet ~= nil then
        local seq = tonumber(ARGV[i + 2])
        replace = et > cet or (et == cet and seq > cseq)
      else
        replace = true
      end
    end
    if replace then
      redis.call('HSET', key, field, ARGV[i + 3])
      set = set + 1
    end
  end
end
local want = tonumber(ARGV[1])
local ttl = redis.call('TTL', key)
if ttl == -1 or (ttl >= 0 and ttl < want) then
  redis.call('EXPIRE', key, want)
end
return set
`;

/**
 * Reads (ARGV[2] = "0") or advances (ARGV[2] = "1") the generation. KEYS[1]: the generation
 * key; ARGV[1]: the floor of a new generation. A missing or unreadable key (Redis lost its
 * data) is set to the floor; advancing gives max(current + 1, floor).
 */
const GEN_SCRIPT = `
local cur = tonumber(redis.call('GET', KEYS[1]) or '')
if cur ~= nil and ARGV[2] == '0' then
  return cur
end
local nxt = tonumber(ARGV[1])
if cur ~= nil and cur + 1 > nxt then
  nxt = cur + 1
end
redis.call('SET', KEYS[1], string.format('%.0f', nxt))
return nxt
`;

const sha1 = (s: string): string => createHash("sha1").update(s).digest("hex");
const CAS_SHA = sha1(CAS_SCRIPT);
const GEN_SHA = sha1(GEN_SCRIPT);

const DAY_SECONDS = 86_400;
/** Longest key expiry we set (EXPIRE rejects absurd values; ten years is "forever" here). */
const MAX_EXPIRE_SECONDS = 3650 * DAY_SECONDS;
/** Consecutive poll timeouts after which the connection is rebuilt. */
const RESET_AFTER_TIMEOUTS = 3;

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
}

function registeredOrNew<T>(registry: Registry, name: string, isT: (m: unknown) => m is T, create: () => T): T {
  const existing = registry.getSingleMetric(name);
  return isT(existing) ? existing : create();
}

/** Redis-specific metrics, shared by every RedisCache of one registry. */
interface CacheMetrics {
  generation: Gauge;
  bumps: Counter<"reason">;
  available: Gauge;
}

function cacheMetrics(registry: Registry): CacheMetrics {
  return {
    generation: registeredOrNew(
      registry,
      "feature_store_cache_generation",
      (m): m is Gauge => m instanceof Gauge,
      () => new Gauge({ name: "feature_store_cache_generation", help: "Redis cache generation this process reads and writes.", registers: [registry] }),
    ),
    bumps: registeredOrNew(
      registry,
      "feature_store_cache_generation_bumps_total",
      (m): m is Counter<"reason"> => m instanceof Counter,
      () =>
        new Counter({
          name: "feature_store_cache_generation_bumps_total",
          help: "Redis cache generations started by this process (reason: write_failed, clear).",
          labelNames: ["reason"] as const,
          registers: [registry],
        }),
    ),
    available: registeredOrNew(
      registry,
      "feature_store_cache_available",
      (m): m is Gauge => m instanceof Gauge,
      () =>
        new Gauge({
          name: "feature_store_cache_available",
          help: "1 while this process reads online values from Redis, 0 while it reads the database instead (outage, quarantine, pending invalidation).",
          registers: [registry],
        }),
    ),
  };
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function isNoScript(err: unknown): boolean {
  return err instanceof ErrorReply && err.message.startsWith("NOSCRIPT");
}

function asGeneration(reply: unknown): number {
  if (typeof reply === "number" && Number.isSafeInteger(reply) && reply >= 0) return reply;
  throw new Error(`unexpected generation reply ${String(reply)}`);
}

/** {@link OnlineStore} in Redis (single server or cluster); see the module comment. */
export class RedisCache implements OnlineStore {
  readonly name: string;
  readonly capabilities: OnlineCapabilities = { sharedAcrossProcesses: true, stableRows: false };

  private readonly ns: string;
  private readonly genKey: string;
  private readonly log: Logger;
  private readonly timeoutMs: number;
  private readonly defaultTtlSeconds: number;
  private readonly pollMs: number;
  private readonly quarantineMs: number;
  private readonly m: CacheMetrics;

  private gen = 0;
  /** A write was lost to the cache: advance the generation before using Redis again. */
  private dirty = false;
  /** Writes lost so far (to tell whether one was lost while a bump was in flight). */
  private writesLost = 0;
  /** Reads need a successful poll that started at or after this time (ms). */
  private quarantineUntil = 0;
  /** Start time of the last successful poll (ms). */
  private goodPollStart = Number.NEGATIVE_INFINITY;
  private failing = false;
  private consecutiveTimeouts = 0;
  private closed = false;
  private polling = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private onFirstReady: (() => void) | undefined;
  private readonly firstReady: Promise<void>;
  private readonly conn: RedisConnection;

  private constructor(opts: RedisCacheOptions) {
    this.name = opts.cluster ? "Redis Cluster" : "Redis";
    this.ns = opts.namespace ?? DEFAULT_NAMESPACE;
    assertNamespace(this.ns);
    this.genKey = generationKey(this.ns);
    this.log = opts.log;
    this.timeoutMs = opts.timeoutMs;
    const ttl = opts.defaultTtlSeconds ?? 7 * DAY_SECONDS;
    if (!(ttl > 0)) throw new Error(`defaultTtlSeconds must be > 0, got ${ttl}`);
    this.defaultTtlSeconds = Math.min(Math.ceil(ttl), MAX_EXPIRE_SECONDS);
    this.pollMs = opts.pollMs ?? 250;
    const reconnectMaxMs = opts.reconnectMaxMs ?? 1000;
    this.quarantineMs = opts.quarantineMs ?? reconnectMaxMs + 2 * this.pollMs;
    this.m = cacheMetrics(opts.metrics.registry);
    this.m.available.set(0);
    this.firstReady = new Promise<void>((resolve) => {
      this.onFirstReady = resolve;
    });
    this.conn = RedisConnection.open({
      urls: opts.url
        .split(",")
        .map((u) => u.trim())
        .filter((u) => u !== ""),
      cluster: opts.cluster ?? false,
      connectTimeoutMs: Math.max(opts.timeoutMs, 500),
      reconnectMaxMs,
      maxPending: 100_000,
      events: { onError: (err) => this.connectionFailed(err), onReady: () => this.connectionReady() },
    });
  }

  /**
   * Connects to Redis and reads the current generation. Waits up to `timeoutMs` for Redis;
   * when it does not answer in time the cache is returned anyway (reads fall back to the
   * database) and keeps connecting in the background.
   */
  static async connect(opts: RedisCacheOptions): Promise<RedisCache> {
    const cache = new RedisCache(opts);
    const connected = await withTimeout(cache.firstReady, opts.timeoutMs, "Redis connect").then(
      () => true,
      () => false,
    );
    cache.onFirstReady = undefined;
    if (connected) await cache.runTick();
    else cache.schedule();
    if (!cache.available) opts.log.warn({ cluster: cache.conn.isCluster }, "Redis cache not reachable at start; reading the database until it answers");
    return cache;
  }

  /** The generation this process reads and writes. */
  get generation(): number {
    return this.gen;
  }

  /** True when reads go to Redis (not dirty, not quarantined, not closed). */
  get available(): boolean {
    return !this.closed && !this.dirty && this.goodPollStart >= this.quarantineUntil;
  }

  /** The key of one entity's hash in the current generation (for tests and debugging). */
  keyOf(tenant: string, entityType: string, entityId: string): string {
    return entityKey(this.ns, this.gen, tenant, entityType, entityId);
  }

  async getMany(tenant: string, entityType: string, keys: ValueKey[]): Promise<(CachedValue | undefined)[]> {
    if (keys.length === 0) return [];
    if (!this.available) throw new RedisUnavailableError(this.closed ? "Redis cache is closed" : "Redis cache is unavailable");
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
    const prefix = entityKeyPrefix(this.ns, this.gen, tenant, entityType);
    const sent: Promise<unknown>[] = [];
    for (const [entityId, g] of groups) {
      const key = `${prefix}${escapePart(entityId)}}`;
      sent.push(this.conn.send(key, ["HMGET", key, ...g.fields], { readonly: true, buffers: true }));
    }
    let replies: unknown[];
    try {
      replies = await withTimeout(Promise.all(sent), this.timeoutMs, "Redis cache read");
    } catch (err) {
      this.commandFailed(err);
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
    if (this.closed) throw new RedisUnavailableError("Redis cache is closed");
    // Until the generation moves on, nothing written now could be trusted later.
    if (this.dirty) throw new RedisUnavailableError("Redis cache is recovering from a lost write; not written");
    const groups = new Map<string, { args: RedisArgument[]; ttl: number }>();
    for (const { key, value, ttlSeconds } of entries) {
      let g = groups.get(key.entity_id);
      if (g === undefined) {
        g = { args: [], ttl: 0 };
        groups.set(key.entity_id, g);
      }
      const ttl = ttlSeconds !== undefined && Number.isFinite(ttlSeconds) && ttlSeconds > 0 ? Math.min(Math.ceil(ttlSeconds), MAX_EXPIRE_SECONDS) : this.defaultTtlSeconds;
      if (ttl > g.ttl) g.ttl = ttl;
      if (value === null) g.args.push(String(key.feature_id), "", "", NEGATIVE_MARKER);
      else g.args.push(String(key.feature_id), String(value.event_time), String(value.seq), encodeCached(value));
    }
    let gen = this.gen;
    try {
      for (let attempt = 1; ; attempt++) {
        const current = await withTimeout(this.putInGeneration(gen, tenant, entityType, groups), this.timeoutMs, "Redis cache write");
        if (current === gen) return;
        // The generation moved while we wrote: what we wrote is unreachable, write it again.
        this.adopt(current);
        if (attempt >= 3) throw new Error("Redis cache generation kept changing during a write");
        gen = current;
      }
    } catch (err) {
      this.writeLost(err);
      throw err;
    }
  }

  /** Forgets everything: starts a new generation. */
  async clear(): Promise<void> {
    try {
      const g = await withTimeout(this.generationScript(true), this.timeoutMs, "Redis cache clear");
      this.adopt(g);
      this.m.bumps.inc({ reason: "clear" });
    } catch (err) {
      this.writeLost(err);
      throw err;
    }
  }

  /** PING (every master of a cluster), bounded by a short timeout. */
  async ping(): Promise<void> {
    await withTimeout(this.conn.pingAll(), Math.min(this.timeoutMs, 1000), "Redis PING");
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    this.m.available.set(0);
    await this.conn.close(1000);
  }

  /**
   * Runs the CAS script for every entity under generation `gen`, then reads the generation
   * again; returns what it is now.
   */
  private async putInGeneration(gen: number, tenant: string, entityType: string, groups: Map<string, { args: RedisArgument[]; ttl: number }>): Promise<number> {
    const prefix = entityKeyPrefix(this.ns, gen, tenant, entityType);
    const writes: Promise<boolean>[] = [];
    for (const [entityId, g] of groups) {
      const key = `${prefix}${escapePart(entityId)}}`;
      writes.push(this.evalScript(CAS_SHA, CAS_SCRIPT, key, [String(g.ttl), ...g.args]).then((r) => r.fellBack));
    }
    // On one server a read queued behind the scripts on the same connection runs after them.
    // Across cluster nodes there is no such order, and a script re-sent as EVAL after NOSCRIPT
    // runs after that read: then read again once the writes are done.
    const inline = this.conn.isCluster ? undefined : this.generationScript(false);
    inline?.catch(() => undefined);
    const fellBack = await Promise.all(writes);
    if (inline !== undefined && !fellBack.includes(true)) return inline;
    return this.generationScript(false);
  }

  /** EVALSHA, or EVAL when the server does not know the script (restart, SCRIPT FLUSH). */
  private async evalScript(sha: string, source: string, key: string, args: RedisArgument[]): Promise<{ reply: unknown; fellBack: boolean }> {
    try {
      return { reply: await this.conn.send(key, ["EVALSHA", sha, "1", key, ...args]), fellBack: false };
    } catch (err) {
      if (!isNoScript(err)) throw err;
      return { reply: await this.conn.send(key, ["EVAL", source, "1", key, ...args]), fellBack: true };
    }
  }

  private async generationScript(advance: boolean): Promise<number> {
    const floor = Math.max(Date.now(), this.gen + 1);
    const { reply } = await this.evalScript(GEN_SHA, GEN_SCRIPT, this.genKey, [String(floor), advance ? "1" : "0"]);
    return asGeneration(reply);
  }

  private adopt(gen: number): void {
    if (gen !== this.gen) {
      this.log.debug({ from: this.gen, to: gen }, "Redis cache generation changed");
      this.gen = gen;
    }
    this.m.generation.set(gen);
  }

  /** One generation poll; while dirty, first checks Redis answers, then advances the generation. */
  private async tick(): Promise<void> {
    const start = Date.now();
    try {
      if (this.dirty) {
        const marks = this.writesLost;
        await withTimeout(this.conn.pingAll(), this.timeoutMs, "Redis PING");
        const g = await withTimeout(this.generationScript(true), this.timeoutMs, "Redis cache generation bump");
        // A write lost while the bump was in flight may postdate it: then bump once more.
        if (this.writesLost === marks) this.dirty = false;
        this.adopt(g);
        this.m.bumps.inc({ reason: "write_failed" });
        this.log.info({ generation: g }, "Redis cache invalidated after a lost write (new generation)");
      } else {
        this.adopt(await withTimeout(this.generationScript(false), this.timeoutMs, "Redis cache generation poll"));
      }
      this.goodPollStart = start;
      this.consecutiveTimeouts = 0;
      if (this.failing) {
        this.failing = false;
        this.log.info("Redis cache answers again");
      }
    } catch (err) {
      this.commandFailed(err, true);
      if (err instanceof TimeoutError && ++this.consecutiveTimeouts >= RESET_AFTER_TIMEOUTS) {
        this.consecutiveTimeouts = 0;
        this.log.warn("Redis does not answer; reconnecting");
        this.conn.reset();
      }
    } finally {
      this.m.available.set(this.available ? 1 : 0);
    }
  }

  private async runTick(): Promise<void> {
    if (this.polling || this.closed) return;
    this.polling = true;
    clearTimeout(this.timer);
    try {
      await this.tick();
    } finally {
      this.polling = false;
      this.schedule();
    }
  }

  private schedule(): void {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.runTick(), this.pollMs);
    this.timer.unref();
  }

  private connectionReady(): void {
    const first = this.onFirstReady;
    this.onFirstReady = undefined;
    if (first !== undefined) first();
    // Poll at once: a dirty process advances the generation as early as possible.
    else void this.runTick();
  }

  private connectionFailed(err: Error): void {
    this.commandFailed(err, true);
  }

  /** Quarantines reads after a failure that was not an answer from Redis (or any poll failure). */
  private commandFailed(err: unknown, always = false): void {
    if (this.closed || (!always && err instanceof ErrorReply)) return;
    this.quarantineUntil = Date.now() + this.quarantineMs;
    this.m.available.set(0);
    if (!this.failing) {
      this.failing = true;
      this.log.warn({ err: errorMessage(err) }, "Redis cache unavailable; reading the database");
    } else {
      this.log.debug({ err: errorMessage(err) }, "Redis cache still unavailable");
    }
  }

  private writeLost(err: unknown): void {
    if (!this.dirty) this.log.warn({ err: errorMessage(err) }, "a write did not reach the Redis cache; it will be invalidated when Redis answers");
    this.dirty = true;
    this.writesLost++;
    this.commandFailed(err, true);
  }
}
