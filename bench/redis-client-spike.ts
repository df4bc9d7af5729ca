/**
 * Spike (issue 12): Bun's built-in Redis client (`Bun.RedisClient`, auto-pipelining) against
 * node-redis (what src/store/redis/connection.ts uses) on the online workload: HMGET of 10
 * fields of one entity hash, 64 in flight, from one process. Reports client CPU microseconds per
 * HMGET (user + system of this process, the figure a shared machine barely moves) and HMGET/s,
 * alternating the clients for SPIKE_ROUNDS rounds, and whether each returns the stored binary
 * values intact (the cache stores packed bytes).
 *
 * `bun bench/redis-client-spike.ts` (starts its own redis-server through test/harness/services.ts).
 */
import { RedisClient } from "bun";
import { createClient, RESP_TYPES } from "redis";
import { startRedis } from "../test/harness/services.ts";
import { round } from "./lib/common.ts";

const ENTITIES = 20_000;
const FIELDS = Array.from({ length: 10 }, (_, i) => String(i + 1));
const OPS = Number(process.env.SPIKE_OPS ?? 40_000);
const ROUNDS = Number(process.env.SPIKE_ROUNDS ?? 3);
const IN_FLIGHT = 64;
/** A value as the cache stores it: packed bytes, not valid UTF-8 (0xff, 0xc1 never are). */
const value = (i: number, f: number): Buffer => Buffer.from([0xff, 0xc1, f, i & 0xff, (i >> 8) & 0xff, 0x00, 0x80, 0x9f]);

const redis = await startRedis();
const node = createClient({ url: redis.url });
await node.connect();
const AS_BUFFERS = { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer } };
for (let i = 0; i < ENTITIES; i += 500) {
  const m = node.multi();
  for (let j = i; j < Math.min(ENTITIES, i + 500); j++) m.hSet(`e:${j}`, Object.fromEntries(FIELDS.map((f, k) => [f, value(j, k)])));
  await m.exec();
}
const bun = new RedisClient(redis.url, { enableAutoPipelining: true });
await bun.connect();

type Get = (key: string) => Promise<unknown[]>;
const clients: Record<string, Get> = {
  "node-redis (sendCommand, buffers)": (key) => node.sendCommand(["HMGET", key, ...FIELDS], AS_BUFFERS) as Promise<unknown[]>,
  "Bun.RedisClient (send, auto-pipelining)": (key) => bun.send("HMGET", [key, ...FIELDS]) as Promise<unknown[]>,
};

function intact(reply: unknown[], i: number): boolean {
  return reply.every((v, k) => v instanceof Uint8Array && Buffer.compare(Buffer.from(v), value(i, k)) === 0);
}

async function run(get: Get): Promise<{ us_cpu: number; per_s: number }> {
  let next = 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < OPS) {
        const i = next++ % ENTITIES;
        await get(`e:${i}`);
      }
    }),
  );
  const s = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  return { us_cpu: round((c.user + c.system) / OPS, 2), per_s: round(OPS / s, 0) };
}

const rows: Record<string, { us_cpu: number[]; per_s: number[]; intact: boolean }> = {};
for (const [name, get] of Object.entries(clients)) rows[name] = { us_cpu: [], per_s: [], intact: intact(await get("e:7"), 7) };
for (let r = 0; r < ROUNDS; r++) {
  for (const [name, get] of Object.entries(clients)) {
    await run(get); // warm-up
    const m = await run(get);
    rows[name]?.us_cpu.push(m.us_cpu);
    rows[name]?.per_s.push(m.per_s);
  }
}
const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
console.log(`\n${OPS} HMGET x 10 fields per round, ${IN_FLIGHT} in flight, median of ${ROUNDS} rounds\n`);
console.log("| client | client CPU us per HMGET | HMGET/s | binary values intact |\n| --- | ---: | ---: | --- |");
for (const [name, r] of Object.entries(rows)) console.log(`| ${name} | ${med(r.us_cpu)} | ${med(r.per_s).toLocaleString("en-US")} | ${r.intact ? "yes" : "no"} |`);
bun.close();
await node.quit();
await redis.stop();
process.exit(0);
