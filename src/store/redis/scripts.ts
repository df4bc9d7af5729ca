/**
 * The Lua scripts of the Redis online store, and how they are run: EVALSHA, falling back to EVAL
 * when the server does not know a script (after a restart or SCRIPT FLUSH).
 */
import { createHash } from "node:crypto";
import { ErrorReply, type RedisArgument } from "redis";
import type { RedisConnection } from "./connection.ts";

/**
 * Compare-and-set of one entity hash. KEYS[1]: the hash. ARGV[1]: seconds the key must live
 * at least. Then per field: name, event_time, seq, packed value (event_time "" marks a
 * negative entry, written only where the field is absent). Returns the number of fields set.
 */
export const CAS_SCRIPT = `
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

/** EVALSHA, or EVAL when the server does not know the script (restart, SCRIPT FLUSH). */
export async function evalScript(conn: RedisConnection, sha: string, source: string, key: string, args: RedisArgument[]): Promise<{ reply: unknown; fellBack: boolean }> {
  try {
    return { reply: await conn.send(key, ["EVALSHA", sha, "1", key, ...args]), fellBack: false };
  } catch (err) {
    if (!isNoScript(err)) throw err;
    return { reply: await conn.send(key, ["EVAL", source, "1", key, ...args]), fellBack: true };
  }
}
