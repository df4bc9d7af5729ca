/**
 * processBatch on the embedded database: each record validated on its own, one write for the
 * batch, per-message outcomes from what each row became (stored or identical), and a registry
 * reload before dead-lettering a feature the snapshot may not know yet.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildDeps, closeDeps } from "../../src/cmd/common.ts";
import { loadConfig } from "../../src/config.ts";
import { createLogger } from "../../src/log.ts";
import type { Deps } from "../../src/serving/deps.ts";
import { registerFeatures } from "../../src/serving/register.ts";
import { processBatch } from "../../src/stream/process.ts";
import type { SourceRecord } from "../../src/stream/source.ts";

const T0 = Date.UTC(2025, 0, 1);
let offset = 0;
const record = (value: unknown): SourceRecord => ({
  topic: "events",
  partition: 0,
  offset: BigInt(offset++),
  timestamp: T0,
  key: null,
  value: Buffer.from(typeof value === "string" ? value : JSON.stringify(value)),
  headers: [],
});
const event = (entity: string, features: Record<string, unknown>, tenant = "acme") => ({ tenant, entity_type: "user", entity_id: entity, features });

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function open(): Promise<Deps> {
  const dir = mkdtempSync(join(tmpdir(), "fs-process-unit-"));
  const deps = await buildDeps(loadConfig({ DATA_DIR: dir, LOG_LEVEL: "silent" }), { log: createLogger("silent", 2) });
  cleanups.push(async () => {
    await closeDeps(deps);
    rmSync(dir, { recursive: true, force: true });
  });
  expect((await registerFeatures(deps, "acme", [{ input: { name: "clicks", version: 1, dtype: "int64", entity_type: "user" } }])).ok).toBe(true);
  return deps;
}

describe("processBatch", () => {
  test("valid, invalid, repeated and foreign-tenant records: stored, dead-lettered, duplicate", async () => {
    const deps = await open();
    const batch = [
      record(event("u1", { clicks: 1 })),
      record("{not json"),
      record(event("u2", { clicks: "many" })),
      record(event("u1", { clicks: 1 })), // the same event again: identical, nothing new stored
      record(event("u3", { clicks: 3 }, "globex")),
      record(event("u4", {})), // no values: valid, counts as stored
    ];
    const out = await processBatch({ deps, tenants: new Set(["acme"]), refreshRegistry: async () => false }, batch);
    expect(out.letters.map((l) => [Number(l.record.offset - batch[0]!.offset), l.code])).toEqual([
      [1, "invalid_request"],
      [2, "invalid_request"],
      [4, "forbidden"],
    ]);
    expect(out.letters[1]?.detail).toMatch(/^features\.clicks: /);
    expect([out.stored, out.duplicates]).toEqual([2, 1]);
    expect(out.storedEventTimes).toEqual([T0]);
    // redelivered as a whole: every valid message is a duplicate now
    const again = await processBatch({ deps, tenants: new Set(["acme"]), refreshRegistry: async () => false }, [batch[0]!]);
    expect([again.stored, again.duplicates, again.letters.length]).toEqual([0, 1, 0]);
  });

  test("a feature the snapshot does not know yet: the registry is reloaded once, then the event is stored", async () => {
    const deps = await open();
    // registered by "another process": straight into the store, this snapshot not reloaded
    await deps.stores.registry.registerDefinitions("acme", () => ({
      plan: { inserts: [{ tenant: "acme", name: "late", version: 1, dtype: "int64", entity_type: "user", ttl_hours: null, description: null, owner: null, tags: {}, created_at: 1, updated_at: 1 }], updates: [] },
      apply: true,
      result: null,
    }));
    const reloads: number[] = [];
    const ctx = {
      deps,
      tenants: new Set(["acme"]),
      refreshRegistry: async (since: number) => {
        reloads.push(since);
        await deps.registry.reload();
        return true;
      },
    };
    const out = await processBatch(ctx, [record(event("u1", { late: 5 })), record(event("u2", { nope: 1 }))]);
    expect(reloads).toHaveLength(1);
    expect(out.stored).toBe(1);
    expect(out.letters.map((l) => l.detail)).toEqual(['features.nope: unknown feature "nope"']);
  });
});
