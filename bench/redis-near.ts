/**
 * The Redis online store alone, in process (no HTTP): CPU microseconds per `getMany` of one
 * entity x 10 features through the near cache, for source trees side by side:
 * `bun bench/redis-near.ts TREE [TREE...]` (each a checkout of the project, e.g. `.` and a
 * `git worktree add /tmp/main main`). Starts its own redis-server (test/harness/services.ts).
 *
 * Each tree's `RedisCache` (own namespace, same Redis) holds REDIS_NEAR_N x REDIS_NEAR_ROUNDS
 * entities; lookups run one at a time, a `setImmediate` apart (no two share a round trip), in
 * three modes per round, trees alternating: `noop` (the loop alone), `hit` (500 entities the near
 * cache holds: the `PING` barrier) and `miss` (an entity never looked up before: its read).
 * Prints the median of the rounds per tree and mode (process CPU, user + system, per lookup).
 */
import { resolve } from "node:path";
import pino from "pino";
import { startRedis } from "../test/harness/services.ts";

const trees = process.argv.slice(2);
if (trees.length === 0) {
  console.error("usage: bun bench/redis-near.ts TREE [TREE...]");
  process.exit(2);
}
const N = Number(process.env.REDIS_NEAR_N ?? 10_000);
const ROUNDS = Number(process.env.REDIS_NEAR_ROUNDS ?? 5);
const MODES = ["noop", "hit", "miss"] as const;
type Mode = (typeof MODES)[number];
type Key = { entity_id: string; feature_id: number };
interface Cache {
  getMany(tenant: string, entityType: string, keys: Key[]): Promise<unknown[]>;
  putMany(tenant: string, entityType: string, entries: unknown[]): Promise<void>;
  close(): Promise<void>;
  readonly nearCacheActive: boolean;
}

const redis = await startRedis();
const log = pino({ level: "silent" });
const entities = N * ROUNDS + 1000;
const keys = (e: number): Key[] => Array.from({ length: 10 }, (_, f) => ({ entity_id: `user_${e}`, feature_id: f + 1 }));
const caches: { tree: string; cache: Cache; next: number }[] = [];
try {
  for (const [i, tree] of trees.entries()) {
    const { RedisCache } = await import(resolve(tree, "src/store/redis/cache.ts"));
    const { Metrics } = await import(resolve(tree, "src/metrics.ts"));
    const cache = (await RedisCache.connect({ url: redis.url, log, metrics: new Metrics({ defaults: false }), timeoutMs: 2000, namespace: `near${i}` })) as Cache;
    for (let s = 0; s < entities; s += 500) {
      const entries = [];
      for (let e = s; e < s + 500; e++) for (let f = 1; f <= 10; f++) entries.push({ key: { entity_id: `user_${e}`, feature_id: f }, value: { event_time: 1_700_000_000_000 + e, seq: f, value: new Uint8Array(Buffer.from(String(e * 10 + f))) } });
      await cache.putMany("t", "user", entries);
    }
    await cache.getMany("t", "user", keys(0));
    while (!cache.nearCacheActive) await Bun.sleep(10);
    for (let e = 0; e < 500; e++) await cache.getMany("t", "user", keys(e));
    caches.push({ tree, cache, next: 1000 });
  }
  const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
  const results = new Map<string, number[]>();
  for (let r = 0; r < ROUNDS; r++) {
    for (const c of r % 2 === 1 ? [...caches].reverse() : caches) {
      for (const mode of MODES) {
        const t0 = process.cpuUsage();
        for (let i = 0; i < N; i++) {
          const k = keys(mode === "miss" ? c.next++ : i % 500);
          if (mode !== "noop") await c.cache.getMany("t", "user", k);
          await tick();
        }
        const d = process.cpuUsage(t0);
        const name = `${c.tree} ${mode}`;
        results.set(name, [...(results.get(name) ?? []), Math.round(((d.user + d.system) / N) * 10) / 10]);
      }
    }
  }
  const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  console.log(`\n| tree | mode | CPU us per lookup (median of ${ROUNDS}) | rounds |\n| --- | --- | ---: | --- |`);
  for (const [name, xs] of results) {
    const [tree, mode] = [name.slice(0, name.lastIndexOf(" ")), name.slice(name.lastIndexOf(" ") + 1) as Mode];
    console.log(`| ${tree} | ${mode} | ${med(xs)} | ${xs.join(" / ")} |`);
  }
} finally {
  for (const c of caches) await c.cache.close();
  await redis.stop();
}
process.exit(0);
