/**
 * Rate-limit counts in Redis (single server or cluster), shared by every server of a fleet:
 * one Lua script per request reads the current and previous fixed-window counters of an id,
 * applies the sliding-window test and counts the request when it fits, atomically. Windows
 * follow the Redis server's clock (`TIME`), so servers with skewed clocks still agree.
 *
 * Keys: `<ns>:rl:{<id>}:<window>` (the id is the hash tag, so both windows of one id live on
 * one cluster node), expiring two windows after their own.
 */
import { createHash } from "node:crypto";
import { ErrorReply } from "redis";
import type { Logger } from "../../log.ts";
import type { WindowHit, WindowStore } from "../types.ts";
import { RedisConnection } from "./connection.ts";
import { DEFAULT_NAMESPACE, escapePart } from "./format.ts";

/**
 * KEYS[1]: the key prefix of one id (`<ns>:rl:{id}:`). ARGV[1]: limit, ARGV[2]: window ms.
 * Returns {allowed (0/1), cur, prev, elapsed ms}.
 */
const SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local w = tonumber(ARGV[2])
local window = math.floor(now / w)
local elapsed = now - window * w
local curKey = KEYS[1] .. window
local cur = tonumber(redis.call('GET', curKey) or '0')
local prev = tonumber(redis.call('GET', KEYS[1] .. (window - 1)) or '0')
local allowed = 0
if prev * (1 - elapsed / w) + cur + 1 <= tonumber(ARGV[1]) then
  allowed = 1
  if redis.call('INCR', curKey) == 1 then
    redis.call('PEXPIRE', curKey, 2 * w + 1000)
  end
end
return {allowed, cur, prev, elapsed}
`;
const SHA = createHash("sha1").update(SCRIPT).digest("hex");

/** Options of {@link RedisWindowStore.open}. */
export interface RedisWindowStoreOptions {
  /** `redis://` / `rediss://` URL, or several comma-separated (a cluster). */
  url: string;
  cluster?: boolean;
  log: Logger;
  /** Connect timeout of one attempt, ms. */
  connectTimeoutMs: number;
  /** Key namespace (default `fs`, the cache's). */
  namespace?: string;
}

function asHit(reply: unknown): WindowHit {
  if (Array.isArray(reply) && reply.length === 4 && reply.every((x) => typeof x === "number")) {
    const [allowed, cur, prev, elapsedMs] = reply as number[];
    return { allowed: allowed === 1, cur: cur as number, prev: prev as number, elapsedMs: elapsedMs as number };
  }
  throw new Error(`unexpected rate limit reply from Redis: ${JSON.stringify(reply)}`);
}

/** {@link WindowStore} in Redis. Commands reject at once while Redis is unreachable. */
export class RedisWindowStore implements WindowStore {
  private constructor(
    private readonly conn: RedisConnection,
    private readonly ns: string,
  ) {}

  /** Starts connecting in the background (hits fail until connected; the limiter fails open). */
  static open(o: RedisWindowStoreOptions): RedisWindowStore {
    const conn = RedisConnection.open({
      urls: o.url
        .split(",")
        .map((u) => u.trim())
        .filter((u) => u !== ""),
      cluster: o.cluster ?? false,
      connectTimeoutMs: o.connectTimeoutMs,
      reconnectMaxMs: 1000,
      maxPending: 10_000,
      events: {
        onError: (err) => o.log.debug({ err: err.message }, "rate limit Redis connection error"),
        onReady: () => o.log.debug("rate limit Redis connection ready"),
      },
    });
    return new RedisWindowStore(conn, o.namespace ?? DEFAULT_NAMESPACE);
  }

  async hit(id: string, limit: number, windowMs: number): Promise<WindowHit> {
    const prefix = `${this.ns}:rl:{${escapePart(id)}}:`;
    const args = [String(limit), String(windowMs)];
    try {
      return asHit(await this.conn.send(prefix, ["EVALSHA", SHA, "1", prefix, ...args]));
    } catch (err) {
      if (!(err instanceof ErrorReply && err.message.startsWith("NOSCRIPT"))) throw err;
      return asHit(await this.conn.send(prefix, ["EVAL", SCRIPT, "1", prefix, ...args]));
    }
  }

  async close(): Promise<void> {
    await this.conn.close(500);
  }
}
