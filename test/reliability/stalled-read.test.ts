/**
 * The 500 seen once in session 7, on the compiled binary with PostgreSQL + Redis: Redis does not
 * answer (its process stopped: calls time out), so online lookups are answered by PostgreSQL; the server process then
 * gets no CPU for a while (SIGSTOP: a machine far too busy) while PostgreSQL streams a large
 * lookup's rows, so that read times out with part of its rows received (503). What follows on
 * that connection must be sound: lookups answer 200 with the right values, and nothing fails with
 * an internal error. (It did not: the next result on the connection had holes, getLatest threw
 * "undefined is not an object (evaluating 'n.ord')" and the lookup answered 500;
 * porsager/postgres#1119, fixed by scripts/patch-deps.ts.)
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import postgres from "postgres";
import { createDatabaseAt, redisCommand, startPostgres, startRedis, type PgService, type RedisService } from "../harness/services.ts";
import { cli, createKey, post, requireBinary, Server, until } from "./support.ts";

requireBinary();

const O = "/api/v1/features/online";
/** Entities of the large lookup, each with a value of ~20 KB (~40 MB of hex on the wire: far more than socket buffers hold). */
const ENTITIES = 1_000;
const PAD = "x".repeat(20_000);
const valueOf = (i: number) => `v${i}:${PAD}`;
const STORE_TIMEOUT_MS = 300;

let pg: PgService | undefined;
let redis: RedisService;
let env: Record<string, string>;
let key: string;
let server: Server | undefined;
let watcher: postgres.Sql;
/** The Redis process, while it is stopped (SIGSTOP). */
let frozenRedis: number | undefined;

beforeAll(async () => {
  const base = process.env.POSTGRES_URL ?? (pg = await startPostgres()).url;
  redis = await startRedis();
  env = { POSTGRES_URL: await createDatabaseAt(base), REDIS_URL: redis.url, LOG_LEVEL: "warn" };
  expect(cli(["migrate"], env).code).toBe(0);
  key = createKey(env, "stall", "admin").key;
  watcher = postgres(env.POSTGRES_URL as string, { max: 1, onnotice: () => {} });
  // the values are written with the default timeouts
  const seeder = await Server.start(env);
  try {
    expect((await post(seeder.base, "/api/v1/features/register", { name: "blob", version: 1, dtype: "string", entity_type: "doc" }, key)).status).toBe(201);
    for (let i = 0; i < ENTITIES; i += 50) {
      const records = Array.from({ length: 50 }, (_, j) => ({ entity_id: `d${i + j}`, event_time: "2025-01-01T00:00:00Z", features: { blob: valueOf(i + j) } }));
      const res = await post(seeder.base, "/api/v1/features/write", { entity_type: "doc", records }, key, 60_000);
      expect(res.status).toBe(200);
    }
  } finally {
    await seeder.stop();
  }
}, 300_000);

afterAll(async () => {
  if (frozenRedis !== undefined) process.kill(frozenRedis, "SIGCONT");
  server?.proc.kill("SIGCONT");
  await server?.stop("SIGKILL");
  await watcher?.end({ timeout: 1 });
  await redis?.stop();
  await pg?.stop();
}, 60_000);

/** Server backends running the online read (getLatest's statement). */
async function activeReads(): Promise<number> {
  return (await watcher`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active' AND query LIKE '%JOIN online_values o%'`).length;
}

test("a lookup cut off mid-stream while the process was stalled answers 503; the next lookups answer right, never 500", async () => {
  // one PostgreSQL connection: under load every connection of the pool is that one
  const s = await Server.start({ ...env, POSTGRES_POOL_SIZE: "1", STORE_TIMEOUT_MS: String(STORE_TIMEOUT_MS) });
  server = s;
  const lookup = (ids: string[]) => post(s.base, O, { entity_ids: ids, feature_names: ["blob"] }, key, 30_000);
  const blobs = async (res: Response) => ((await res.json()) as { results: { features: { blob: string | null } }[] }).results.map((r) => r.features.blob?.split(":")[0] ?? null);

  // Redis stops answering (its connections stay open): a lookup times out on it, then PostgreSQL answers
  const redisPid = Number(/process_id:(\d+)/.exec(await redisCommand(redis.port, ["INFO", "server"]))?.[1]);
  expect(redisPid).toBeGreaterThan(0);
  process.kill(redisPid, "SIGSTOP");
  frozenRedis = redisPid;
  const warm = await lookup(["d1", "d2"]);
  expect(warm.status).toBe(200);
  expect(await blobs(warm)).toEqual(["v1", "v2"]);

  const big = lookup(Array.from({ length: ENTITIES }, (_, i) => `d${i}`));
  await until("the large read running on PostgreSQL", async () => (await activeReads()) > 0, 10_000, 5);
  s.proc.kill("SIGSTOP");
  await Bun.sleep(1_500);
  s.proc.kill("SIGCONT");
  const cut = await big;
  expect(cut.status).toBe(503);
  expect(cut.headers.get("content-type")).toContain("application/problem+json");
  expect(((await cut.json()) as { code: string }).code).toBe("unavailable");

  await until("the cut-off read over on PostgreSQL", async () => (await activeReads()) === 0, 10_000);
  // Five lookups must answer right. One may still answer 503 `unavailable` (a store timeout: with
  // Redis stopped each lookup first waits out its timeout, the change feed's poll shares the one
  // connection, and on a loaded CI machine 300 ms is short; a late cancel of the cut-off read can
  // also land on the next query): that is the contract's answer to a store that did not answer in
  // time. A 500, or a 200 with wrong values, is the bug.
  let answered = 0;
  for (let attempt = 0; attempt < 30 && answered < 5; attempt++) {
    const res = await lookup(["d3", "nope", `d${ENTITIES - 1}`]);
    expect([200, 503]).toContain(res.status);
    if (res.status === 503) {
      expect(((await res.json()) as { code: string }).code).toBe("unavailable");
      await Bun.sleep(100);
      continue;
    }
    expect(await blobs(res)).toEqual(["v3", null, `v${ENTITIES - 1}`]);
    answered++;
  }
  expect(answered).toBe(5);
  process.kill(redisPid, "SIGCONT");
  frozenRedis = undefined;
  // no request and no background read (the change feed's poll shares the connection) met a bug
  await s.stop();
  server = undefined;
  expect(s.output).not.toContain("undefined is not an object");
  expect(s.output).not.toMatch(/"msg":"(store call failed|unhandled error)"/);
}, 120_000);
