/**
 * The Lua scripts of the Redis online store, and how they are run: EVALSHA, falling back to EVAL
 * when the server does not know a script (after a restart or SCRIPT FLUSH).
 */
import { createHash } from "node:crypto";
import { ErrorReply, type RedisArgument } from "redis";
import type { RedisConnection } from "./connection.ts";

/**
 * Compare-and-set of entity hashes, one or many per call (a bulk write sends up to 64 at once:
 * one script run instead of one per entity). KEYS: the hashes. ARGV[1]: one binary string
 * (RedisCache's CasArgs), per key in order: seconds the key must live at least (less a 64th) and the number
 * of fields (4-byte big-endian each), then per field: its name (2-byte length, bytes) and the
 * stored form (4-byte length, bytes) of a value or of a negative entry (msgpack nil, written
 * only where the field is absent); a field at most once per key (RedisCache.putMany keeps the
 * newest entry of each). A value replaces the field's when its (event_time, seq), read from
 * both stored forms, is greater. The key's expiry is set to the wanted seconds when it has
 * none or less than the wanted minus a 64th (not re-set for every offer of a bulk load:
 * measured ~10% of redis-server's CPU per value over 100,000 entities written again; an entry
 * may then leave the cache up to that 64th early, which only costs a read of PostgreSQL:
 * `expired` is decided from event time). Returns the number of fields set.
 */
export const CAS_SCRIPT = `
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
local blob = ARGV[1]
local pos = 1
local set = 0
for k = 1, #KEYS do
  local key = KEYS[k]
  local want, n
  want, n, pos = struct.unpack('>I4I4', blob, pos)
  if n > 0 then
    -- one HMGET and one HSET per key (not per field)
    local names = {}
    local vals = {}
    for j = 1, n do
      names[j], vals[j], pos = struct.unpack('>I2c0I4c0', blob, pos)
    end
    local curs = {}
    for s = 1, n, 1000 do
      local part = redis.call('HMGET', key, unpack(names, s, math.min(s + 999, n)))
      for j = 1, #part do curs[s + j - 1] = part[j] end
    end
    local sets = {}
    for j = 1, n do
      local cur = curs[j]
      local v = vals[j]
      local replace
      if v == neg then
        replace = not cur
      else
        replace = (not cur) or cur == neg
        if not replace then
          local ok, cet, cseq = pcall(header, cur)
          if ok and cet ~= nil then
            local et, seq = header(v)
            replace = et > cet or (et == cet and seq > cseq)
          else
            replace = true
          end
        end
      end
      if replace then
        sets[#sets + 1] = names[j]
        sets[#sets + 1] = v
      end
    end
    for s = 1, #sets, 2000 do
      redis.call('HSET', key, unpack(sets, s, math.min(s + 1999, #sets)))
    end
    set = set + #sets / 2
  end
  -- a key whose expiry is within a 64th of the wanted one is left as it is: a bulk load offers
  -- every key again and again, and re-setting an expiry a second short cost an EXPIRE each time
  local ttl = redis.call('TTL', key)
  if ttl == -1 or (ttl >= 0 and ttl < want - math.floor(want / 64)) then
    redis.call('EXPIRE', key, want)
  end
end
return set
`;

/**
 * Reads (ARGV[2] = "0") or advances (ARGV[2] = "1") the generation. KEYS[1]: the generation
 * key; ARGV[1]: the floor of a new generation. A missing or unreadable key (Redis lost its
 * data) is set to the floor; advancing gives max(current + 1, floor).
 */
export const GEN_SCRIPT = `
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
export const CAS_SHA = sha1(CAS_SCRIPT);
export const GEN_SHA = sha1(GEN_SCRIPT);

function isNoScript(err: unknown): boolean {
  return err instanceof ErrorReply && err.message.startsWith("NOSCRIPT");
}

/** A generation number from a script reply (throws on anything else). */
export function asGeneration(reply: unknown): number {
  if (typeof reply === "number" && Number.isSafeInteger(reply) && reply >= 0) return reply;
  throw new Error(`unexpected generation reply ${String(reply)}`);
}

/**
 * EVALSHA, or EVAL when the server does not know the script (restart, SCRIPT FLUSH). `key` is
 * one key or several (on a cluster, of one hash slot: the call is routed by the first).
 */
export async function evalScript(conn: RedisConnection, sha: string, source: string, key: string | readonly string[], args: RedisArgument[]): Promise<{ reply: unknown; fellBack: boolean }> {
  const keys = typeof key === "string" ? [key] : key;
  const route = keys[0] as string;
  try {
    return { reply: await conn.send(route, ["EVALSHA", sha, String(keys.length), ...keys, ...args]), fellBack: false };
  } catch (err) {
    if (!isNoScript(err)) throw err;
    return { reply: await conn.send(route, ["EVAL", source, String(keys.length), ...keys, ...args]), fellBack: true };
  }
}
