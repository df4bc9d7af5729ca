/**
 * Smoke check of test/harness/services.ts against real services (not a *.test.ts file):
 *
 *   bun test/harness/services.smoke.ts            # everything
 *   bun test/harness/services.smoke.ts redis kafka-4   # a subset
 *
 * Starts each service, does a real round trip with the project's own client libraries
 * (postgres, redis v6, kafkajs), exercises stopServer()/startServer(), stops everything,
 * checks that no process or temp dir is left, and prints startup times. Exits non-zero
 * on any failure.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { createConnection } from "node:net";
import { join } from "node:path";
import { Kafka, logLevel } from "kafkajs";
import postgres from "postgres";
import { createClient, createCluster } from "redis";
import { type KafkaService, redisCommand, startKafka, startPostgres, startRedis, startRedisCluster, stopAll, trackedResources } from "./services.ts";

const ALL = ["postgres", "redis", "redis-cluster", "kafka-4", "kafka-3.9", "sigkill"] as const;
type Check = (typeof ALL)[number];
const wanted: Check[] = process.argv.length > 2 ? (process.argv.slice(2) as Check[]) : [...ALL];

const timings: string[] = [];
const failures: string[] = [];
const usedPorts: number[] = [];
/** Temp dirs of the services this script started (other processes on the machine may use the harness too). */
const ourDirs: string[] = [];

function secs(t0: number): string {
  return `${((performance.now() - t0) / 1000).toFixed(2)} s`;
}

function assert(cond: boolean, msg: string): asserts cond {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}

async function timed<T>(label: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const r = await fn();
  timings.push(`${label.padEnd(44)} ${secs(t0)}`);
  return r;
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: "127.0.0.1", port });
    s.setTimeout(1000, () => {
      s.destroy();
      resolve(false);
    });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

async function checkPostgres(): Promise<void> {
  const pg = await timed("postgres: start (initdb + server + db)", () => startPostgres());
  usedPorts.push(pg.port);
  ourDirs.push(pg.dir);
  console.log(`  POSTGRES_URL=${pg.url}`);
  const sql = postgres(pg.url, { max: 2, onnotice: () => {} });
  const [row] = await sql<{ one: number; db: string; v: string }[]>`SELECT 1 AS one, current_database() AS db, current_setting('server_version') AS v`;
  assert(row?.one === 1 && row.db === "feature_store", `SELECT 1 on feature_store: ${JSON.stringify(row)}`);
  console.log(`  postgres ${row.v}: SELECT 1 ok`);
  const maxConn = await sql<{ max_connections: string }[]>`SHOW max_connections`;
  assert(maxConn[0]?.max_connections === "200", "max_connections=200");
  await sql.end();

  const url2 = await timed("postgres: createDatabase", () => pg.createDatabase("suite_a"));
  const sql2 = postgres(url2, { max: 1, onnotice: () => {} });
  await sql2`CREATE TABLE t (id int primary key, v text)`;
  await sql2`INSERT INTO t VALUES (1, 'persisted')`;
  await sql2.end();

  await timed("postgres: stopServer (fast)", () => pg.stopServer());
  assert(!(await portOpen(pg.port)), "postgres port closed after stopServer");
  await timed("postgres: startServer", () => pg.startServer());
  await timed("postgres: stopServer (hard/immediate)", () => pg.stopServer({ hard: true }));
  await timed("postgres: startServer after crash", () => pg.startServer());
  const sql3 = postgres(url2, { max: 1, onnotice: () => {} });
  const rows = await sql3<{ v: string }[]>`SELECT v FROM t WHERE id = 1`;
  assert(rows[0]?.v === "persisted", "data survives stopServer/startServer");
  await sql3.end();
  console.log("  postgres: createDatabase, restart and crash-restart ok");

  const withPw = await timed("postgres: start with password", () => startPostgres({ password: "s3cret" }));
  usedPorts.push(withPw.port);
  ourDirs.push(withPw.dir);
  const sqlPw = postgres(withPw.url, { max: 1, onnotice: () => {} });
  const pwRow = await sqlPw<{ one: number }[]>`SELECT 1 AS one`;
  assert(pwRow[0]?.one === 1, "password auth SELECT 1");
  await sqlPw.end();
  const bad = postgres(withPw.url.replace("s3cret", "wrong"), { max: 1, onnotice: () => {}, connect_timeout: 5 });
  let rejected = false;
  try {
    await bad`SELECT 1`;
  } catch {
    rejected = true;
  }
  await bad.end({ timeout: 1 });
  assert(rejected, "wrong password rejected");
  console.log("  postgres: password auth ok");
  await timed("postgres: stop x2", async () => {
    await pg.stop();
    await withPw.stop();
  });
}

async function checkRedis(): Promise<void> {
  const r = await timed("redis: start (incl. apt install if missing)", () => startRedis({ maxmemory: "64mb", maxmemoryPolicy: "allkeys-lru" }));
  usedPorts.push(r.port);
  ourDirs.push(r.dir);
  console.log(`  REDIS_URL=${r.url}`);
  const client = createClient({ url: r.url });
  client.on("error", () => {});
  await client.connect();
  await client.set("smoke:k", "v1");
  assert((await client.get("smoke:k")) === "v1", "redis GET after SET");
  const policy = await client.configGet("maxmemory-policy");
  assert(policy["maxmemory-policy"] === "allkeys-lru", "maxmemory-policy applied");
  client.destroy();
  console.log("  redis: SET/GET ok, maxmemory-policy ok");
  await timed("redis: stopServer", () => r.stopServer());
  assert(!(await portOpen(r.port)), "redis port closed after stopServer");
  await timed("redis: startServer", () => r.startServer());
  assert((await redisCommand(r.port, ["GET", "smoke:k"])) === "", "no persistence across restart");
  await r.stopServer({ hard: true });
  await r.startServer();
  assert((await redisCommand(r.port, ["PING"])) === "PONG", "PING after hard restart");
  await timed("redis: stop", () => r.stop());
}

async function checkRedisCluster(): Promise<void> {
  const c = await timed("redis-cluster: start (3 masters)", () => startRedisCluster());
  usedPorts.push(...c.ports);
  ourDirs.push(c.dir);
  console.log(`  REDIS_CLUSTER_URLS=${c.urls.join(",")}`);
  const cluster = createCluster({ rootNodes: c.urls.map((url) => ({ url })) });
  cluster.on("error", () => {});
  await cluster.connect();
  const keys = Array.from({ length: 30 }, (_, i) => `smoke:key:${i}`);
  for (const k of keys) await cluster.set(k, k.toUpperCase());
  for (const k of keys) assert((await cluster.get(k)) === k.toUpperCase(), `cluster GET ${k}`);
  await cluster.close();
  const sizes = await Promise.all(c.ports.map(async (p) => Number(await redisCommand(p, ["DBSIZE"]))));
  assert(sizes.filter((s) => s > 0).length === 3, `keys spread over all 3 masters (${sizes.join("/")})`);
  console.log(`  redis-cluster: 30 keys SET/GET via createCluster, spread ${sizes.join("/")} over the masters`);
  await timed("redis-cluster: stop", () => c.stop());
}

async function produceConsume(k: KafkaService, topic: string, value: string): Promise<void> {
  const kafka = new Kafka({ clientId: "smoke", brokers: [k.brokers], logLevel: logLevel.ERROR });
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  await producer.send({ topic, messages: [{ key: "k", value }] });
  await producer.disconnect();
  const consumer = kafka.consumer({ groupId: `smoke-${topic}-${Date.now()}` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  try {
    const got = await new Promise<string[]>((resolve, reject) => {
      const seen: string[] = [];
      const timer = setTimeout(() => reject(new Error(`no message on ${topic} within 60 s (got ${JSON.stringify(seen)})`)), 60_000);
      void consumer.run({
        eachMessage: async ({ message }) => {
          seen.push(String(message.value));
          if (seen.includes(value)) {
            clearTimeout(timer);
            resolve(seen);
          }
        },
      });
    });
    assert(got.includes(value), `consumed ${value}`);
  } finally {
    await consumer.disconnect();
  }
}

async function checkKafka(line: "4" | "3.9"): Promise<void> {
  const k = await timed(`kafka ${line}: start (jars cached or mvn)`, () => startKafka({ version: line }));
  usedPorts.push(k.port, k.controllerPort);
  ourDirs.push(k.dir);
  console.log(`  KAFKA_BROKERS=${k.brokers} (Kafka ${k.version})`);
  await timed(`kafka ${line}: createTopic (3 partitions)`, () => k.createTopic("smoke-events", 3));
  await k.createTopic("smoke-events", 3); // idempotent
  await timed(`kafka ${line}: produce+consume 1 msg (kafkajs)`, () => produceConsume(k, "smoke-events", "hello"));
  console.log(`  kafka ${k.version}: kafkajs create topic / produce / consume ok`);
  await timed(`kafka ${line}: stopServer (controlled)`, () => k.stopServer());
  assert(!(await portOpen(k.port)), "kafka port closed after stopServer");
  await timed(`kafka ${line}: startServer`, () => k.startServer());
  await produceConsume(k, "smoke-events", "after-restart");
  await k.stopServer({ hard: true });
  await timed(`kafka ${line}: startServer after SIGKILL`, () => k.startServer());
  await produceConsume(k, "smoke-events", "after-crash");
  console.log(`  kafka ${k.version}: restart and crash-restart keep the topic and serve again`);
  await timed(`kafka ${line}: stop`, () => k.stop());
}

/** The CLI's watchdog must kill services when the runner is SIGKILLed. */
async function checkSigkill(): Promise<void> {
  const proc = Bun.spawn({ cmd: [process.execPath, join(import.meta.dir, "services.ts"), "redis", "postgres"], stdout: "pipe", stderr: "pipe" });
  const reader = proc.stdout.getReader();
  let out = "";
  const deadline = Date.now() + 60_000;
  while (!(out.includes("REDIS_URL=") && out.includes("POSTGRES_URL=")) && Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    out += new TextDecoder().decode(value);
  }
  const ports = [...out.matchAll(/127\.0\.0\.1:(\d+)/g)].map((m) => Number(m[1]));
  assert(ports.length === 2, `CLI printed two URLs: ${out}`);
  usedPorts.push(...ports);
  for (const p of ports) assert(await portOpen(p), `port ${p} open while CLI runs`);
  proc.kill("SIGKILL");
  await proc.exited;
  const t0 = performance.now();
  for (;;) {
    const open = await Promise.all(ports.map(portOpen));
    if (!open.some(Boolean)) break;
    assert(performance.now() - t0 < 10_000, "services still up 10 s after the CLI was SIGKILLed");
    await Bun.sleep(100);
  }
  await Bun.sleep(1500); // the watchdog removes temp dirs a second after killing
  timings.push(`${"cli SIGKILL -> services gone".padEnd(44)} ${secs(t0)}`);
  console.log(`  cli: after SIGKILL of the CLI, its services were gone within ${secs(t0)}`);
}

/** Processes started by this script that are still alive (zombies ignored). */
function leftovers(): string[] {
  const ps = Bun.spawnSync(["ps", "-eo", "pid=,ppid=,stat=,args="]).stdout.toString();
  const portRe = new RegExp(`127\\.0\\.0\\.1:(${usedPorts.join("|") || "0"})\\b`);
  return ps
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "")
    .filter((l) => {
      const [pid, ppid, stat = ""] = l.split(/\s+/);
      if (stat.startsWith("Z") || Number(pid) === process.pid) return false;
      if (l.includes("bash -c")) return false; // our own watchdog: exits with this process
      if (l.includes("ps -eo pid=")) return false; // this very ps
      return Number(ppid) === process.pid || ourDirs.some((d) => l.includes(d)) || (/redis-server/.test(l) && portRe.test(l));
    });
}

const T0 = performance.now();
const steps: Record<Check, () => Promise<void>> = {
  postgres: checkPostgres,
  redis: checkRedis,
  "redis-cluster": checkRedisCluster,
  "kafka-4": () => checkKafka("4"),
  "kafka-3.9": () => checkKafka("3.9"),
  sigkill: checkSigkill,
};
for (const name of wanted) {
  const step = steps[name];
  if (step === undefined) {
    failures.push(`unknown check ${name} (known: ${ALL.join(", ")})`);
    continue;
  }
  console.log(`▶ ${name}`);
  try {
    await step();
  } catch (e) {
    failures.push(`${name}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    console.log(`  FAILED: ${e instanceof Error ? e.message : String(e)}`);
  }
}

await stopAll();
const tracked = trackedResources();
if (tracked.processGroups.length > 0 || tracked.dirs.length > 0) failures.push(`harness still tracks ${JSON.stringify(tracked)}`);
const left = leftovers();
if (left.length > 0) failures.push(`processes left running:\n${left.join("\n")}`);
const strayDirs = ourDirs.filter((d) => existsSync(d));
if (strayDirs.length > 0) failures.push(`temp dirs left: ${strayDirs.join(" ")}`);
for (const p of usedPorts) if (await portOpen(p)) failures.push(`port ${p} still open`);
const pgrepHits = ourDirs.flatMap((d) => Bun.spawnSync(["pgrep", "-a", "-f", d]).stdout.toString().trim().split("\n")).filter((l) => l !== "");
console.log(`▶ leftovers: pgrep -f <each of ${ourDirs.length} service dirs> → ${pgrepHits.length === 0 ? "(none)" : pgrepHits.join("\n")}; children of this script → ${left.length === 0 ? "(none)" : left.length}`);
if (pgrepHits.length > 0) failures.push(`pgrep still finds:\n${pgrepHits.join("\n")}`);

console.log("\nTimings:");
for (const t of timings) console.log(`  ${t}`);
console.log(`  ${"total".padEnd(44)} ${secs(T0)}`);
if (failures.length > 0) {
  console.log(`\n${failures.length} FAILED:\n${failures.join("\n\n")}`);
  process.exit(1);
}
console.log(`\n${wanted.length} passed, 0 failed`);
