/**
 * StreamWorker with a fake EventSource, a collecting dead-letter sink and the embedded database
 * behind a fault-injecting offline store: outages are retried, failures that would repeat are
 * isolated by bisection and dead-lettered, and an outage past the retry limit ends the worker.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { AppError } from "../../src/errors.ts";
import { buildDeps, closeDeps } from "../../src/cmd/common.ts";
import { loadConfig } from "../../src/config.ts";
import type { Deps } from "../../src/serving/deps.ts";
import { registerFeatures } from "../../src/serving/register.ts";
import { StoreUnavailable } from "../../src/store/errors.ts";
import { WorkerMetrics } from "../../src/metrics.ts";
import type { DeadLetter, DeadLetterSink, EventSource, PartitionOffset, SourceHandlers, SourceRecord } from "../../src/stream/source.ts";
import { StreamWorker } from "../../src/stream/worker.ts";
import { FaultyOfflineStore } from "../support/faulty-store.ts";

const TENANT = "acme";
const T0 = Date.UTC(2025, 0, 1);

class FakeSource implements EventSource {
  handlers: SourceHandlers | undefined;
  readonly commits: PartitionOffset[][] = [];
  paused = 0;
  resumed = 0;
  async start(h: SourceHandlers) {
    this.handlers = h;
    h.onAssignment([{ topic: "events", partition: 0 }]);
  }
  async commit(offsets: PartitionOffset[]) {
    this.commits.push(offsets);
  }
  pause() {
    this.paused++;
  }
  resume() {
    this.resumed++;
  }
  async stop() {}
  /** the highest committed next offset of partition 0 */
  get committed(): bigint {
    return this.commits.flat().reduce((m, o) => (o.offset > m ? o.offset : m), 0n);
  }
}

class Letters implements DeadLetterSink {
  readonly sent: DeadLetter[] = [];
  async send(letters: DeadLetter[]) {
    this.sent.push(...letters);
  }
  async close() {}
}

function record(offset: number, entity: string, clicks: number): SourceRecord {
  const value = JSON.stringify({ tenant: TENANT, entity_type: "user", entity_id: entity, features: { clicks } });
  return { topic: "events", partition: 0, offset: BigInt(offset), timestamp: T0 + offset, key: null, value: Buffer.from(value), headers: [] };
}

async function until(what: string, ok: () => boolean): Promise<void> {
  const end = Date.now() + 10_000;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`gave up waiting for ${what}`);
    await Bun.sleep(5);
  }
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(opts: { retryLimitMs?: number } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "fs-worker-unit-"));
  const logged: { level: number; msg: string }[] = [];
  const log = pino({ level: "debug" }, { write: (s: string) => void logged.push(JSON.parse(s)) });
  const base = await buildDeps(loadConfig({ DATA_DIR: dir, LOG_LEVEL: "silent" }), { log });
  const faulty = new FaultyOfflineStore(base.stores.offline);
  const deps: Deps = { ...base, stores: { ...base.stores, offline: faulty } };
  cleanups.push(async () => {
    await closeDeps(base);
    rmSync(dir, { recursive: true, force: true });
  });
  const reg = await registerFeatures(deps, TENANT, [{ input: { name: "clicks", version: 1, dtype: "int64", entity_type: "user" } }]);
  expect(reg.ok).toBe(true);
  const source = new FakeSource();
  const dlq = new Letters();
  const metrics = new WorkerMetrics(deps.metrics.registry);
  const worker = new StreamWorker({
    source,
    dlq,
    process: { deps, tenants: new Set([TENANT]), refreshRegistry: async () => false },
    metrics,
    log,
    clock: deps.clock,
    batchSize: 100,
    batchWaitMs: 1,
    backoff: { initialMs: 1, maxMs: 2 },
    ...(opts.retryLimitMs !== undefined ? { retryLimitMs: opts.retryLimitMs } : {}),
  });
  await worker.start();
  cleanups.push(() => worker.stop(1_000));
  const deliver = (records: SourceRecord[]) => (source.handlers as SourceHandlers).onRecords(records, BigInt(records.length), () => true);
  const latest = async (entity: string) => {
    const def = deps.registry.current.resolve(TENANT, "clicks");
    if (def.kind !== "ok") throw new Error("clicks is not registered");
    return (await base.stores.offline.getLatest([{ feature_id: def.def.id, entity_id: entity }]))[0];
  };
  return { deps, faulty, source, dlq, worker, metrics, deliver, latest, logged };
}

describe("StreamWorker", () => {
  test("a store outage is retried with consumption paused, then everything is stored and committed", async () => {
    const w = await setup();
    w.faulty.fault = (_rows, call) => (call < 3 ? new StoreUnavailable("SQLite", "database is locked") : undefined);
    await w.deliver([record(0, "u1", 1), record(1, "u2", 2), record(2, "u3", 3)]);
    await until("the batch is committed", () => w.source.committed === 3n);
    expect(w.faulty.writeCalls).toBe(4);
    expect(w.dlq.sent).toEqual([]);
    expect([w.source.paused, w.source.resumed]).toEqual([1, 1]);
    expect((await w.metrics.retries.get()).values.find((v) => v.labels.stage === "store")?.value).toBe(3);
    expect((await w.latest("u3"))?.event_time).toBe(T0 + 2);
  });

  test("a failure that would repeat is not retried: the failing record is isolated, dead-lettered as internal, the rest stored", async () => {
    const w = await setup();
    // the backend refuses any write that holds entity "poison", every time
    w.faulty.fault = (rows) => (rows.some((r) => r.entity_id === "poison") ? new RangeError("value out of range for the column") : undefined);
    const batch = [0, 1, 2, 3, 4, 5, 6].map((i) => record(i, i === 4 ? "poison" : `u${i}`, i));
    await w.deliver(batch);
    await until("the batch is committed", () => w.source.committed === 7n);
    expect(w.dlq.sent.map((l) => [l.record.offset, l.code])).toEqual([[4n, "internal"]]);
    expect(w.dlq.sent[0]?.detail).toBe("storing this record failed: RangeError: value out of range for the column");
    for (const i of [0, 1, 2, 3, 5, 6]) expect((await w.latest(`u${i}`))?.event_time).toBe(T0 + i);
    expect(await w.latest("poison")).toBeNull();
    expect(w.source.paused).toBe(0);
    expect((await w.metrics.messages.get()).values.filter((v) => v.value > 0).map((v) => [v.labels.outcome, v.value]).sort()).toEqual([["dlq", 1], ["stored", 6]]);
    expect(w.logged.some((l) => l.level === 50 && /dead-letter/.test(l.msg))).toBe(true);
  });

  test("an outage that outlasts the retry limit ends the worker (failed resolves) and commits nothing", async () => {
    const w = await setup({ retryLimitMs: 30 });
    w.faulty.fault = () => new StoreUnavailable("PostgreSQL", "connection refused");
    await w.deliver([record(0, "u1", 1)]);
    const err = await w.worker.failed;
    expect(err).toBeInstanceOf(AppError);
    expect([(err as AppError).code, (err as AppError).cause instanceof StoreUnavailable]).toEqual(["unavailable", true]);
    expect(w.source.commits).toEqual([]);
    expect(w.dlq.sent).toEqual([]);
    expect(w.faulty.writeCalls).toBeGreaterThan(1);
  });
});
