/**
 * The Redis online cache against REAL Redis servers: a single server (REDIS_URL), a
 * three-master cluster (REDIS_CLUSTER_URLS, comma-separated), and throw-away servers started
 * through the harness for the outage cases (they need to stop and start Redis).
 *
 * Without REDIS_URL / REDIS_CLUSTER_URLS the suite fails in CI (`CI` set); locally it starts
 * servers through the harness (and skips only if that is impossible).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { createClient } from "redis";
import { loadConfig } from "../../src/config.ts";
import { Metrics } from "../../src/metrics.ts";
import { onlineBackends } from "../../src/stores.ts";
import { RedisCache, type RedisCacheOptions } from "../../src/store/redis/cache.ts";
import type { CachedValue, StoredRow, ValueKey } from "../../src/store/types.ts";
import { freePort, startRedis, startRedisCluster, type RedisService } from "../harness/services.ts";
import { startTcpProxy } from "../support/tcp-proxy.ts";

const CI = Boolean(process.env.CI);
const log = pino({ level: "silent" });
const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

/** The env URL, or (locally only) a harness server; undefined when neither is possible. */
async function resolve(envName: string, start: () => Promise<{ url: string; stop(): Promise<void> }>): Promise<string | undefined> {
  const v = process.env[envName];
  if (v) return v;
  if (CI) return undefined;
  try {
    const svc = await start();
    cleanups.push(() => svc.stop());
    return svc.url;
  } catch (e) {
    console.warn(`${envName} unset and the harness could not start Redis (${e instanceof Error ? e.message : String(e)}): skipping`);
    return undefined;
  }
}

const singleUrl = await resolve("REDIS_URL", () => startRedis());
const clusterUrl = await resolve("REDIS_CLUSTER_URLS", async () => {
  const c = await startRedisCluster();
  return { url: c.urls.join(","), stop: () => c.stop() };
});

if (CI) {
  test("REDIS_URL and REDIS_CLUSTER_URLS are set in CI", () => {
    expect(process.env.REDIS_URL, "REDIS_URL must name a real Redis in CI").toBeTruthy();
    expect(process.env.REDIS_CLUSTER_URLS, "REDIS_CLUSTER_URLS must name a real Redis Cluster in CI").toBeTruthy();
  });
}

const ns = (): string => `fs-test-${crypto.randomUUID().slice(0, 8)}`;
const bytes = (...b: number[]): Uint8Array => new Uint8Array(b);
const row = (event_time: number, seq: number, value: Uint8Array = bytes(seq & 0xff)): StoredRow => ({ event_time, seq, value });
const key = (feature_id: number, entity_id: string): ValueKey => ({ feature_id, entity_id });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function open(url: string, extra: Partial<RedisCacheOptions> = {}): Promise<RedisCache> {
  const cache = await RedisCache.connect({ url, log, metrics: new Metrics({ defaults: false }), timeoutMs: 1000, namespace: ns(), ...extra });
  cleanups.push(() => cache.close());
  return cache;
}

const plainClient = (url: string) => createClient({ url });

/** A plain client for looking at what the cache stored. */
async function raw(url: string): Promise<ReturnType<typeof plainClient>> {
  const c = plainClient(url);
  c.on("error", () => undefined);
  await c.connect();
  cleanups.push(async () => c.destroy());
  return c;
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs: number, stepMs = 20): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    if (await cond()) return Date.now() - t0;
    if (Date.now() - t0 > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(stepMs);
  }
}

async function rejects(p: Promise<unknown>): Promise<boolean> {
  try {
    await p;
    return false;
  } catch {
    return true;
  }
}

/** The behaviour every topology shares. */
function semantics(name: string, url: () => string | undefined, extra: Partial<RedisCacheOptions> = {}): void {
  describe.skipIf(url() === undefined)(`${name}: semantics`, () => {
    const u = (): string => url() as string;

    test("ordering holds across every MessagePack number encoding of event_time and seq", async () => {
      const c = await open(u(), extra);
      // fixint, negative fixint, int8/16/32, uint8/16/32, and float64 (beyond 32 bits)
      const magnitudes = [-(2 ** 40), -3_000_000_000, -70_000, -300, -100, -5, 0, 5, 127, 200, 300, 70_000, 3_000_000_000, 2 ** 33, 1_718_000_000_123];
      for (const [f, vary] of [
        [1, "event_time"],
        [2, "seq"],
      ] as const) {
        const k = key(f, "enc");
        const offers = magnitudes.map((m) => (vary === "event_time" ? row(m, 1) : row(42, Math.abs(m))));
        offers.sort(() => Math.random() - 0.5);
        const expected = vary === "event_time" ? row(1_718_000_000_123, 1) : row(42, 1_718_000_000_123);
        for (const v of offers) {
          await c.putMany("t", "user", [{ key: k, value: v }]);
          const [got] = await c.getMany("t", "user", [k]);
          expect(got === undefined || got === null ? 0 : vary === "event_time" ? got.event_time : got.seq).toBe(
            Math.max(...offers.slice(0, offers.indexOf(v) + 1).map((o) => (vary === "event_time" ? o.event_time : o.seq))),
          );
        }
        expect(await c.getMany("t", "user", [k])).toEqual([expected]);
      }
    });

    test("key expiry: at least the longest TTL held, never shortened, a default without TTL", async () => {
      const c = await open(u(), { ...extra, defaultTtlSeconds: 3 * 86_400 });
      const r = await raw(u().split(",")[0] as string);
      const cluster = u().includes(",") || extra.cluster === true;
      // On a cluster a plain client may ask the wrong node: ask the cache's own key owner via TTL on every node.
      const ttlOf = async (entity: string): Promise<number> => {
        const k = c.keyOf("t", "user", entity);
        if (!cluster) return r.ttl(k);
        for (const nodeUrl of u().split(",")) {
          const n = await raw(nodeUrl);
          try {
            return await n.ttl(k);
          } catch {
            /* MOVED: not this node */
          }
        }
        throw new Error("no node owns the key");
      };
      await c.putMany("t", "user", [{ key: key(1, "x"), value: row(1, 1), ttlSeconds: 3600 }]);
      expect(await ttlOf("x")).toBeWithin(3590, 3601);
      await c.putMany("t", "user", [{ key: key(2, "x"), value: row(1, 2), ttlSeconds: 60 }]);
      expect(await ttlOf("x")).toBeWithin(3590, 3601); // not shortened
      await c.putMany("t", "user", [{ key: key(3, "x"), value: row(1, 3), ttlSeconds: 7200 }]);
      expect(await ttlOf("x")).toBeWithin(7190, 7201); // extended
      await c.putMany("t", "user", [{ key: key(1, "y"), value: null }]); // no TTL: the default
      expect(await ttlOf("y")).toBeWithin(3 * 86_400 - 10, 3 * 86_400 + 1);
      await c.putMany("t", "user", [
        { key: key(1, "z"), value: row(1, 1), ttlSeconds: 120 },
        { key: key(2, "z"), value: row(1, 1), ttlSeconds: 900.2 },
      ]);
      expect(await ttlOf("z")).toBeWithin(890, 902); // the longest of the call
      // a stale offer that changes nothing still keeps the key alive as long as its TTL asks
      await c.putMany("t", "user", [{ key: key(1, "z"), value: row(0, 0), ttlSeconds: 5000 }]);
      expect(await ttlOf("z")).toBeWithin(4990, 5001);
    });

    test("getMany with many entities answers in key order (duplicates, misses, negatives)", async () => {
      const c = await open(u(), extra);
      const entities = Array.from({ length: 300 }, (_, i) => `user_${i}`);
      const expected = new Map<string, CachedValue>();
      const entries: { key: ValueKey; value: CachedValue }[] = [];
      for (const [i, e] of entities.entries()) {
        for (let f = 1; f <= 10; f++) {
          if ((i + f) % 7 === 0) continue; // a miss
          const v = (i + f) % 11 === 0 ? null : row(1000 + i, f, bytes(i & 0xff, f));
          entries.push({ key: key(f, e), value: v });
          expected.set(`${f}/${e}`, v);
        }
      }
      await c.putMany("t", "user", entries);
      const keys: ValueKey[] = [];
      for (const e of entities) for (let f = 1; f <= 10; f++) keys.push(key(f, e));
      keys.push(key(3, "user_5"), key(99, "user_5"), key(1, "nobody"));
      keys.sort(() => Math.random() - 0.5);
      const got = await c.getMany("t", "user", keys);
      expect(got).toHaveLength(keys.length);
      for (const [i, k] of keys.entries()) expect(got[i]).toEqual(expected.get(`${k.feature_id}/${k.entity_id}`));
    });

    test("entity ids with ':', '{', '}', '%' and non-ASCII never collide", async () => {
      const c = await open(u(), extra);
      const ids = ["a:b", "a", "b", "{a}", "a}", "{", "}", "}{", "%3A", ":", "%", "a%3Ab", "é🙂中", "x".repeat(100) + "é".repeat(206)];
      expect(new TextEncoder().encode(ids.at(-1)).length).toBe(512);
      await c.putMany(
        "t",
        "user",
        ids.map((id, i) => ({ key: key(1, id), value: row(i, i, new TextEncoder().encode(id)) })),
      );
      // tenant / entity id boundaries: ("t", "x:y") vs ("t:x", "y")
      await c.putMany("t:x", "user", [{ key: key(1, "y"), value: row(1, 1, bytes(1)) }]);
      await c.putMany("t", "user", [{ key: key(1, "x:y"), value: row(2, 2, bytes(2)) }]);
      const got = await c.getMany("t", "user", [...ids.map((id) => key(1, id)), key(1, "x:y")]);
      expect(got).toEqual([...ids.map((id, i) => row(i, i, new TextEncoder().encode(id))), row(2, 2, bytes(2))]);
      expect(await c.getMany("t:x", "user", [key(1, "y")])).toEqual([row(1, 1, bytes(1))]);
      expect(await c.getMany("t", "other", [key(1, "a")])).toEqual([undefined]);
      // the whole identity is the hash tag: exactly one '{' and one '}'
      for (const id of ids) {
        const k = c.keyOf("t", "user", id);
        expect(k.split("{").length).toBe(2);
        expect(k.endsWith("}")).toBe(true);
        expect(k.split("}").length).toBe(2);
      }
    });

    test("clear() starts a new generation: nothing old is served", async () => {
      const c = await open(u(), extra);
      await c.putMany("t", "user", [{ key: key(1, "u"), value: row(1, 1) }]);
      const g = c.generation;
      await c.clear();
      expect(c.generation).toBeGreaterThan(g);
      expect(await c.getMany("t", "user", [key(1, "u")])).toEqual([undefined]);
    });

    test("the script is reloaded after SCRIPT FLUSH (EVALSHA falls back to EVAL)", async () => {
      const c = await open(u(), extra);
      for (const nodeUrl of u().split(",")) await (await raw(nodeUrl)).scriptFlush();
      await c.putMany("t", "user", [{ key: key(1, "s"), value: row(5, 5) }]);
      expect(await c.getMany("t", "user", [key(1, "s")])).toEqual([row(5, 5)]);
    });

    test("ping answers; close stops it", async () => {
      const c = await RedisCache.connect({ url: u(), log, metrics: new Metrics({ defaults: false }), timeoutMs: 1000, namespace: ns(), ...extra });
      await c.ping();
      expect(c.available).toBe(true);
      await c.close();
      expect(await rejects(c.getMany("t", "user", [key(1, "a")]))).toBe(true);
      expect(await rejects(c.putMany("t", "user", [{ key: key(1, "a"), value: null }]))).toBe(true);
    });
  });
}

semantics("single server", () => singleUrl);
semantics("cluster (3 masters)", () => clusterUrl, { cluster: true });

describe.skipIf(clusterUrl === undefined)("cluster specifics", () => {
  test("entities spread over every master; one call still answers everything in order", async () => {
    const url = clusterUrl as string;
    const c = await open(url);
    const entities = Array.from({ length: 200 }, (_, i) => `e${i}`);
    await c.putMany(
      "t",
      "user",
      entities.map((e, i) => ({ key: key(7, e), value: row(i, i) })),
    );
    const got = await c.getMany(
      "t",
      "user",
      entities.map((e) => key(7, e)),
    );
    expect(got).toEqual(entities.map((_, i) => row(i, i)));
    // every master holds some of them
    const prefix = c.keyOf("t", "user", "").slice(0, -1);
    const perNode: number[] = [];
    for (const nodeUrl of url.split(",")) {
      const n = await raw(nodeUrl);
      let count = 0;
      for await (const batch of n.scanIterator({ MATCH: `${prefix.replace(/[*?[\]\\]/g, "\\$&")}*`, COUNT: 1000 })) count += batch.length;
      perNode.push(count);
    }
    expect(perNode.length).toBeGreaterThanOrEqual(3);
    expect(perNode.every((n) => n > 0)).toBe(true);
    expect(perNode.reduce((a, b) => a + b, 0)).toBe(entities.length);
  });

  test("a comma-separated URL list means a cluster without the flag", async () => {
    const c = await open(clusterUrl as string);
    await c.putMany("t", "user", [{ key: key(1, "q"), value: row(1, 1) }]);
    expect(await c.getMany("t", "user", [key(1, "q")])).toEqual([row(1, 1)]);
  });
});

// The outage rules need a Redis this test can stop and start: always a harness server
// (locally, only when the harness could start one above).
const harnessAvailable = CI || singleUrl !== undefined;

describe.skipIf(singleUrl === undefined)("near cache (single server, client tracking)", () => {
  const u = (): string => singleUrl as string;
  /** Two servers on one namespace; `b` reads through its near cache once tracking is on. */
  async function pair(): Promise<{ a: RedisCache; b: RedisCache }> {
    const namespace = ns();
    const a = await open(u(), { namespace });
    const b = await open(u(), { namespace });
    await b.getMany("t", "user", [key(1, "warm")]); // the first lookup starts tracking
    await waitFor("b tracks", () => b.nearCacheActive, 5000);
    return { a, b };
  }

  test("a value written through another server is served at once, every time", async () => {
    const { a, b } = await pair();
    const k = key(1, "user_1");
    for (let i = 1; i <= 300; i++) {
      await a.putMany("t", "user", [{ key: k, value: row(i, i) }]);
      // b has the previous value in its near cache; it must never answer it now
      expect(await b.getMany("t", "user", [k])).toEqual([row(i, i)]);
      expect(b.nearCacheActive).toBe(true);
    }
  });

  test("exact even when invalidations arrive late: every lookup waits for the tracking connection to catch up", async () => {
    // b talks to Redis through a proxy that delays everything Redis sends by 40 ms (order kept):
    // its invalidations arrive well after a's writes have completed.
    const target = new URL(u());
    const proxy = startTcpProxy({ hostname: target.hostname, port: Number(target.port) }, { replyDelayMs: 40 });
    cleanups.push(async () => proxy.stop());
    const namespace = ns();
    const a = await open(u(), { namespace });
    const b = await open(`redis://127.0.0.1:${proxy.port}`, { namespace });
    await b.getMany("t", "user", [key(1, "warm")]);
    await waitFor("b tracks", () => b.nearCacheActive, 5000);
    const k = key(1, "user_1");
    for (let i = 1; i <= 10; i++) {
      await a.putMany("t", "user", [{ key: k, value: row(i, i) }]);
      expect(await b.getMany("t", "user", [k])).toEqual([row(i, i)]);
      expect(await b.getMany("t", "user", [k])).toEqual([row(i, i)]); // (the second from the near cache)
    }
    // a lookup that also misses waits for its read's reply instead of a PING: the value held
    // before that wait is taken again after it
    for (let i = 11; i <= 20; i++) {
      await a.putMany("t", "user", [{ key: k, value: row(i, i) }]);
      expect(await b.getMany("t", "user", [k, key(1, `fresh_${i}`)])).toEqual([row(i, i), undefined]);
      expect(await b.getMany("t", "user", [key(2, `fresh_${i}`), k])).toEqual([undefined, row(i, i)]);
    }
    expect(b.nearCacheActive).toBe(true);
  });

  test("rows are handed out as the same objects while current (stableRows); a change gives a new one", async () => {
    const { a, b } = await pair();
    expect(b.capabilities.stableRows).toBe(true);
    const k = key(1, "user_1");
    await a.putMany("t", "user", [{ key: k, value: row(1, 1) }]);
    const [first] = await b.getMany("t", "user", [k]);
    const [again] = await b.getMany("t", "user", [k]);
    expect(again).toBe(first as StoredRow);
    await a.putMany("t", "user", [{ key: k, value: row(2, 2) }]);
    const [changed] = await b.getMany("t", "user", [k]);
    expect(changed).toEqual(row(2, 2));
    expect(changed).not.toBe(first as StoredRow);
  });

  test("changes made straight in Redis (another writer, DEL, expiry) are followed at once", async () => {
    const { a, b } = await pair();
    const r = await raw(u());
    const k1 = key(1, "e1");
    const k2 = key(2, "e1");
    await a.putMany("t", "user", [
      { key: k1, value: row(5, 5) },
      { key: k2, value: null },
    ]);
    expect(await b.getMany("t", "user", [k1, k2])).toEqual([row(5, 5), null]);
    const hash = b.keyOf("t", "user", "e1");
    await r.hDel(hash, "1");
    expect(await b.getMany("t", "user", [k1, k2])).toEqual([undefined, null]);
    await r.del(hash);
    expect(await b.getMany("t", "user", [k1, k2])).toEqual([undefined, undefined]);
    await a.putMany("t", "user", [{ key: k1, value: row(6, 6) }]);
    expect(await b.getMany("t", "user", [k1])).toEqual([row(6, 6)]);
    await r.pExpire(hash, 1);
    await sleep(20);
    expect(await b.getMany("t", "user", [k1])).toEqual([undefined]);
  });

  test("an entity id with a lone surrogate (sent to Redis as U+FFFD) is never served stale", async () => {
    const { a, b } = await pair();
    const k = key(1, "odd\ud800id");
    for (let i = 1; i <= 5; i++) {
      await a.putMany("t", "user", [{ key: k, value: row(i, i) }]);
      expect(await b.getMany("t", "user", [k])).toEqual([row(i, i)]);
      expect(await b.getMany("t", "user", [k])).toEqual([row(i, i)]);
    }
  });

  test("lookups racing writes never answer a value older than a write that completed before they started", async () => {
    const { a, b } = await pair();
    const ids = Array.from({ length: 8 }, (_, i) => `race_${i}`);
    const done = new Map<string, number>(ids.map((id) => [id, 0]));
    let writing = true;
    const writer = (async () => {
      for (let i = 1; i <= 150; i++) {
        const id = ids[i % ids.length] as string;
        await a.putMany("t", "user", [{ key: key(1, id), value: row(i, i) }]);
        done.set(id, i);
      }
      writing = false;
    })();
    let violations = 0;
    let reads = 0;
    const reader = async (): Promise<void> => {
      while (writing) {
        const floor = new Map(done);
        const got = await b.getMany(
          "t",
          "user",
          ids.map((id) => key(1, id)),
        );
        reads++;
        ids.forEach((id, j) => {
          const v = got[j];
          if ((floor.get(id) as number) > 0 && (v === undefined || v === null || v.event_time < (floor.get(id) as number))) violations++;
        });
      }
    };
    await Promise.all([writer, reader(), reader(), reader()]);
    expect(reads).toBeGreaterThan(10);
    expect(violations).toBe(0);
  });

  test("the tracking connection killed: lookups stay exact (Redis read directly), then tracking resumes", async () => {
    const { a, b } = await pair();
    const r = await raw(u());
    const k = key(1, "user_1");
    await a.putMany("t", "user", [{ key: k, value: row(1, 1) }]);
    expect(await b.getMany("t", "user", [k])).toEqual([row(1, 1)]);
    const list = String(await r.sendCommand(["CLIENT", "LIST"]));
    const ids = [...list.matchAll(/id=(\d+) [^\n]*name=feature-store-near/g)].map((m) => m[1] as string);
    expect(ids.length).toBeGreaterThan(0);
    for (const id of ids) await r.sendCommand(["CLIENT", "KILL", "ID", id]);
    await a.putMany("t", "user", [{ key: k, value: row(2, 2) }]);
    expect(await b.getMany("t", "user", [k])).toEqual([row(2, 2)]);
    await waitFor("b tracks again", () => b.nearCacheActive, 5000);
    await a.putMany("t", "user", [{ key: k, value: row(3, 3) }]);
    expect(await b.getMany("t", "user", [k])).toEqual([row(3, 3)]);
  });

  test("REDIS_NEAR_CACHE=false: the store opened from the settings has no near cache (every lookup reads Redis)", async () => {
    const open = async (env: Record<string, string>): Promise<RedisCache> => {
      const c = (await onlineBackends[0]?.open(loadConfig({ REDIS_URL: u(), ...env }), { log, metrics: new Metrics({ defaults: false }) })) as RedisCache;
      cleanups.push(() => c.close());
      return c;
    };
    const off = await open({ REDIS_NEAR_CACHE: "false" });
    expect(off.capabilities.stableRows).toBe(false);
    await off.getMany("t", "user", [key(1, "x")]);
    await sleep(100);
    expect(off.nearCacheActive).toBe(false);
    // the default keeps one (the same lookup starts its tracking)
    const on = await open({});
    expect(on.capabilities.stableRows).toBe(true);
    await on.getMany("t", "user", [key(1, "x")]);
    await waitFor("tracks", () => on.nearCacheActive, 5000);
  });

  test("a cluster has no near cache (rows are read fresh)", async () => {
    if (clusterUrl === undefined) return;
    const c = await open(clusterUrl, { cluster: true });
    expect(c.capabilities.stableRows).toBe(false);
    await c.getMany("t", "user", [key(1, "x")]);
    await sleep(50);
    expect(c.nearCacheActive).toBe(false);
  });
});

describe.skipIf(!harnessAvailable)("outages (harness Redis, stopped and started)", () => {
  let svc: RedisService;
  const started = async (args: string[] = []): Promise<RedisService> => {
    svc = await startRedis({ args });
    cleanups.push(() => svc.stop());
    return svc;
  };

  test(
    "a write lost while Redis was down: the stale value is never served again; another server follows within ~1 s",
    async () => {
      // AOF: Redis comes back WITH its pre-outage data, so the stale value is really there.
      const s = await started(["--appendonly", "yes", "--appendfsync", "always"]);
      const namespace = ns();
      const a = await open(s.url, { namespace, timeoutMs: 500 });
      const b = await open(s.url, { namespace, timeoutMs: 500 });
      const k = key(1, "user_1");
      await a.putMany("t", "user", [{ key: k, value: row(100, 1) }]);
      expect(await b.getMany("t", "user", [k])).toEqual([row(100, 1)]);
      const g0 = a.generation;
      const staleKey = a.keyOf("t", "user", "user_1");

      await s.stopServer();
      // The database accepted v2; the cache cannot take it. Both calls fail fast.
      let t0 = Date.now();
      expect(await rejects(a.putMany("t", "user", [{ key: k, value: row(200, 2) }]))).toBe(true);
      expect(Date.now() - t0).toBeLessThan(600);
      t0 = Date.now();
      expect(await rejects(a.getMany("t", "user", [k]))).toBe(true);
      expect(await rejects(b.getMany("t", "user", [k]))).toBe(true);
      expect(Date.now() - t0).toBeLessThan(1200);
      expect(await rejects(a.ping())).toBe(true);

      // B keeps asking while Redis comes back: it must never see v1 again.
      let seenStale = false;
      let watching = true;
      const watcher = (async () => {
        while (watching) {
          try {
            const [v] = await b.getMany("t", "user", [k]);
            if (v && v.event_time === 100) seenStale = true;
          } catch {
            /* unavailable: the caller reads the database */
          }
          await sleep(5);
        }
      })();

      await s.startServer();
      const restartedAt = Date.now();
      const r = await raw(s.url);
      expect(await r.hGet(staleKey, "1")).not.toBeNull(); // the pre-outage value survived the restart

      await waitFor("A starts a new generation", () => a.generation > g0 && a.available, 5000);
      const bumpedAt = Date.now();
      const followMs = await waitFor("B follows the new generation", () => b.generation === a.generation, 1500, 5);
      expect(followMs).toBeLessThan(1000);
      expect(await a.getMany("t", "user", [k])).toEqual([undefined]); // a miss: the database answers
      await waitFor("B reads Redis again", () => b.available, 5000);
      expect(await b.getMany("t", "user", [k])).toEqual([undefined]);
      watching = false;
      await watcher;
      expect(seenStale).toBe(false);
      expect(bumpedAt - restartedAt).toBeLessThan(3000);

      // and the cache is used normally again
      await b.putMany("t", "user", [{ key: k, value: row(200, 2) }]);
      expect(await a.getMany("t", "user", [k])).toEqual([row(200, 2)]);
    },
    60_000,
  );

  test(
    "a clean generation change (another server's clear) is followed within ~1 s",
    async () => {
      const s = await started();
      const namespace = ns();
      const a = await open(s.url, { namespace });
      const b = await open(s.url, { namespace });
      await b.putMany("t", "user", [{ key: key(1, "u"), value: row(1, 1) }]);
      await a.clear();
      const ms = await waitFor("B follows", () => b.generation === a.generation, 2000, 5);
      expect(ms).toBeLessThan(1000);
      expect(b.available).toBe(true);
      expect(await b.getMany("t", "user", [key(1, "u")])).toEqual([undefined]);
    },
    30_000,
  );

  test(
    "a write racing a generation change is written again under the new generation",
    async () => {
      const s = await started();
      const namespace = ns();
      const a = await open(s.url, { namespace, pollMs: 60_000 }); // never polls: only its writes notice
      const b = await open(s.url, { namespace });
      await b.clear();
      expect(a.generation).not.toBe(b.generation);
      await a.putMany("t", "user", [{ key: key(1, "r"), value: row(3, 3) }]);
      expect(a.generation).toBe(b.generation);
      expect(await b.getMany("t", "user", [key(1, "r")])).toEqual([row(3, 3)]);
    },
    30_000,
  );

  test(
    "Redis restarted without its data: a fresh generation, never an old number again",
    async () => {
      const s = await started();
      const namespace = ns();
      const a = await open(s.url, { namespace });
      await a.putMany("t", "user", [{ key: key(1, "d"), value: row(1, 1) }]);
      await a.clear();
      await a.clear();
      const before = a.generation;
      await s.stopServer();
      await s.startServer(); // empty: no persistence
      await waitFor("A reads Redis again", () => a.available && a.generation !== before, 6000);
      expect(a.generation).toBeGreaterThan(before);
      const r = await raw(s.url);
      expect(Number(await r.get(`${namespace}:gen`))).toBe(a.generation);
      expect(await a.getMany("t", "user", [key(1, "d")])).toEqual([undefined]);
      await a.putMany("t", "user", [{ key: key(1, "d"), value: row(2, 2) }]);
      expect(await a.getMany("t", "user", [key(1, "d")])).toEqual([row(2, 2)]);
    },
    30_000,
  );

  test(
    "Redis down at start: connect returns, reads fail fast, Redis is used once it answers",
    async () => {
      const s = await started();
      await s.stopServer();
      const t0 = Date.now();
      const c = await open(s.url, { timeoutMs: 500 });
      expect(Date.now() - t0).toBeLessThan(1500);
      expect(c.available).toBe(false);
      const t1 = Date.now();
      expect(await rejects(c.getMany("t", "user", [key(1, "a")]))).toBe(true);
      expect(Date.now() - t1).toBeLessThan(50);
      // closing while Redis is down neither hangs nor throws
      const other = await RedisCache.connect({ url: s.url, log, metrics: new Metrics({ defaults: false }), timeoutMs: 200, namespace: ns() });
      const t2 = Date.now();
      await other.close();
      expect(Date.now() - t2).toBeLessThan(1500);
      await s.startServer();
      await waitFor("cache available", () => c.available, 5000);
      await c.putMany("t", "user", [{ key: key(1, "a"), value: row(1, 1) }]);
      expect(await c.getMany("t", "user", [key(1, "a")])).toEqual([row(1, 1)]);
    },
    30_000,
  );

  test(
    "a Redis that stops answering (CLIENT PAUSE): calls time out, the lost write invalidates the cache",
    async () => {
      const s = await started();
      const namespace = ns();
      const c = await open(s.url, { namespace, timeoutMs: 300 });
      await c.putMany("t", "user", [{ key: key(1, "p"), value: row(1, 1) }]);
      const g0 = c.generation;
      const r = await raw(s.url);
      await r.sendCommand(["CLIENT", "PAUSE", "1500", "ALL"]);
      let t0 = Date.now();
      expect(await rejects(c.getMany("t", "user", [key(1, "p")]))).toBe(true);
      expect(Date.now() - t0).toBeLessThan(600);
      t0 = Date.now();
      expect(await rejects(c.putMany("t", "user", [{ key: key(1, "p"), value: row(2, 2) }]))).toBe(true);
      expect(Date.now() - t0).toBeLessThan(600);
      // while dirty: reads and writes are refused at once
      t0 = Date.now();
      expect(await rejects(c.getMany("t", "user", [key(1, "p")]))).toBe(true);
      expect(await rejects(c.putMany("t", "user", [{ key: key(1, "p"), value: row(3, 3) }]))).toBe(true);
      expect(Date.now() - t0).toBeLessThan(50);
      await waitFor("new generation after the pause", () => c.available && c.generation > g0, 8000);
      expect(await c.getMany("t", "user", [key(1, "p")])).toEqual([undefined]);
    },
    30_000,
  );
});

describe.skipIf(!harnessAvailable)("cluster outage (harness cluster, one master frozen)", () => {
  test(
    "a lost write on a cluster: no invalidation until every master answers, then exactly one",
    async () => {
      const cl = await startRedisCluster();
      cleanups.push(() => cl.stop());
      const url = cl.urls.join(",");
      const metrics = new Metrics({ defaults: false });
      const c = await RedisCache.connect({ url, cluster: true, log, metrics, timeoutMs: 300, namespace: ns() });
      cleanups.push(() => c.close());
      const entities = Array.from({ length: 60 }, (_, i) => `e${i}`);
      await c.putMany(
        "t",
        "user",
        entities.map((e) => ({ key: key(1, e), value: row(1, 1) })),
      );
      const g0 = c.generation;
      const node = await raw(cl.urls[0] as string);
      const pid = Number(/process_id:(\d+)/.exec(await node.info("server"))?.[1]);
      expect(pid).toBeGreaterThan(0);
      const bumps = async (): Promise<number> => {
        const m = metrics.registry.getSingleMetric("feature_store_cache_generation_bumps_total");
        return (await m?.get())?.values.reduce((a, v) => a + v.value, 0) ?? 0;
      };
      process.kill(pid, "SIGSTOP"); // hangs: the socket stays open, nothing answers
      try {
        expect(await rejects(c.putMany("t", "user", entities.map((e) => ({ key: key(1, e), value: row(2, 2) }))))).toBe(true);
        await sleep(1500); // several polls: the generation key may well be on a live master
        expect(c.generation).toBe(g0);
        expect(c.available).toBe(false);
        expect(await bumps()).toBe(0);
      } finally {
        process.kill(pid, "SIGCONT");
      }
      await waitFor("new generation once every master answers", () => c.available && c.generation !== g0, 10_000);
      await sleep(600);
      expect(await bumps()).toBe(1);
      const after = await c.getMany(
        "t",
        "user",
        entities.map((e) => key(1, e)),
      );
      expect(after).toEqual(entities.map(() => undefined));
    },
    60_000,
  );
});

describe.skipIf(!harnessAvailable || (!CI && Bun.which("openssl") === null))("TLS", () => {
  test(
    "rediss:// URLs work (a private CA trusted through NODE_EXTRA_CA_CERTS)",
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "fs-test-tls-"));
      cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
      const openssl = (args: string[]): void => {
        const r = Bun.spawnSync(["openssl", ...args], { cwd: dir, stdout: "ignore", stderr: "pipe" });
        if (r.exitCode !== 0) throw new Error(`openssl ${args[0] ?? ""} failed: ${r.stderr.toString()}`);
      };
      openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=feature-store test CA"]);
      openssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]);
      writeFileSync(join(dir, "ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
      openssl(["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf"]);
      const tlsPort = await freePort();
      const s = await startRedis({
        args: ["--tls-port", String(tlsPort), "--tls-cert-file", join(dir, "server.crt"), "--tls-key-file", join(dir, "server.key"), "--tls-ca-cert-file", join(dir, "ca.crt"), "--tls-auth-clients", "no"],
      });
      cleanups.push(() => s.stop());
      // NODE_EXTRA_CA_CERTS is read at process start: probe from a child process (every import
      // by absolute path, since the probe lives outside the repository).
      const probe = join(dir, "probe.ts");
      const src = (rel: string): string => JSON.stringify(new URL(rel, import.meta.url).pathname);
      writeFileSync(
        probe,
        `import pino from ${JSON.stringify(Bun.resolveSync("pino", import.meta.dir))};
import { Metrics } from ${src("../../src/metrics.ts")};
import { RedisCache } from ${src("../../src/store/redis/cache.ts")};
const c = await RedisCache.connect({ url: process.env.PROBE_URL ?? "", log: pino({ level: "silent" }), metrics: new Metrics({ defaults: false }), timeoutMs: 3000, namespace: "tls" });
const k = { feature_id: 1, entity_id: "a" };
await c.putMany("t", "user", [{ key: k, value: { event_time: 1, seq: 1, value: new Uint8Array([7]) } }]);
const [v] = await c.getMany("t", "user", [k]);
// the near cache's own tracking connection speaks TLS too
for (let i = 0; i < 250 && !c.nearCacheActive; i++) await Bun.sleep(20);
const [w] = await c.getMany("t", "user", [k]);
console.log(JSON.stringify({ available: c.available, seq: v?.seq, value: v ? Array.from(v.value) : null, near: c.nearCacheActive, again: w?.seq }));
await c.close();
`,
      );
      const r = Bun.spawnSync([process.execPath, probe], {
        cwd: new URL("../..", import.meta.url).pathname,
        env: { ...process.env, NODE_EXTRA_CA_CERTS: join(dir, "ca.crt"), PROBE_URL: `rediss://localhost:${tlsPort}` },
        stdout: "pipe",
        stderr: "pipe",
        timeout: 30_000,
      });
      expect(r.stderr.toString()).toBe("");
      expect(JSON.parse(r.stdout.toString())).toEqual({ available: true, seq: 1, value: [7], near: true, again: 1 });
    },
    60_000,
  );
});
