/**
 * A key change reported by the change feed reloads the key ring; a reload that fails (the
 * database busy or unreachable for a moment) is retried on its own, since the feed has moved
 * past that change: a revoked key stops working without waiting for another change.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { loadConfig } from "../../src/config.ts";
import { systemClock } from "../../src/lib/time.ts";
import { Metrics } from "../../src/metrics.ts";
import { followChanges } from "../../src/serving/changes.ts";
import { RegistryHolder } from "../../src/serving/deps.ts";
import { generateKey, KeyRing } from "../../src/serving/keys.ts";
import { InProcessCache } from "../../src/store/memory/online-cache.ts";
import { StoreUnavailable } from "../../src/store/errors.ts";
import { SqliteDatabase } from "../../src/store/sqlite/database.ts";
import { storesOf } from "../../src/stores.ts";

const dir = mkdtempSync(join(tmpdir(), "fs-key-reload-"));
const open: SqliteDatabase[] = [];
afterAll(async () => {
  for (const db of open) await db.close();
  rmSync(dir, { recursive: true, force: true });
});

test("a key reload that fails after a revocation is retried: the key stops working without another change", async () => {
  // the serving process and an admin process (`feature-store keys revoke`) on one file; the
  // tests poll the feed themselves
  const server = new SqliteDatabase({ dataDir: dir, pollIntervalMs: 60_000 });
  const admin = new SqliteDatabase({ dataDir: dir, pollIntervalMs: 60_000 });
  open.push(server, admin);
  await server.migrate();
  await admin.migrate();
  const k = generateKey("acme", ["read"], 0, null);
  await admin.createKey(k.row);

  // the server's key reads, of which the next `failures` fail as an unavailable database does
  let failures = 0;
  let reads = 0;
  const keyReads = {
    listKeys: async () => {
      reads++;
      if (failures > 0) {
        failures--;
        throw new StoreUnavailable("sqlite", "database is locked");
      }
      return server.listKeys();
    },
  };
  const keys = new KeyRing(keyReads, systemClock);
  await keys.reload();
  expect(keys.authenticate(k.key)?.tenant).toBe("acme");
  const registry = new RegistryHolder(server);
  await registry.reload();
  followChanges({
    config: loadConfig({ DATA_DIR: dir }),
    stores: storesOf(server, new InProcessCache(1000)),
    registry,
    keys,
    clock: systemClock,
    log: pino({ level: "silent" }),
    metrics: new Metrics({ defaults: false }),
  });

  failures = 1;
  const before = reads;
  expect(await admin.revokeKey(k.row.id, Date.now())).toBe(true);
  server.poll(); // the feed reports the key change once; its reload fails
  await Bun.sleep(0);
  expect(reads).toBe(before + 1);
  expect(failures).toBe(0);
  expect(keys.authenticate(k.key)?.tenant).toBe("acme"); // still the old ring

  // no further change and no further poll: the retry alone brings the revocation in
  const t0 = Date.now();
  while (keys.authenticate(k.key) !== null && Date.now() - t0 < 10_000) await Bun.sleep(20);
  expect(keys.authenticate(k.key)).toBeNull();
  expect(reads).toBe(before + 2);
}, 20_000);
