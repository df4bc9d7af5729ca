/**
 * The in-process caches of `serve --workers 2` under writes (embedded stack): online 1 x 10 at
 * 1,000/s for 10 s, first alone, then while 1-entity writes arrive through one connection
 * (~20/s); reports the cache hit ratio summed over both workers (their /metrics, scraped over
 * fresh connections until both answered), p50/p99 and errors. A write through one worker is
 * another process's write for the other, which must forget what it changed.
 *
 * `bun bench/cache-writes.ts BINARY...` (one line of JSON per binary and phase; builds measured
 * one after the other, same data shape).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { onlineOne, prng, record, ENTITY_TYPE } from "./lib/dataset.ts";
import { loadData, startServer, type StackEnv } from "./lib/server.ts";
import { attack, ensureVegeta, writeTargets } from "./lib/vegeta.ts";

const bins = process.argv.slice(2);
if (bins.length === 0) {
  console.error("usage: bun bench/cache-writes.ts BINARY...");
  process.exit(2);
}
const vegeta = await ensureVegeta();
const entities = 5000;
async function counts(url: string): Promise<Map<string, { hit: number; miss: number }>> {
  const by = new Map<string, { hit: number; miss: number }>();
  for (let i = 0; i < 40 && by.size < 2; i++) {
    const t = await (await fetch(`${url}/metrics`, { headers: { connection: "close" }, keepalive: false })).text();
    const w = /worker="(\d+)"/.exec(t)?.[1] ?? "1";
    const hit = Number(/feature_store_cache_requests_total\{result="hit"[^}]*\} (\d+)/.exec(t)?.[1] ?? 0);
    const miss = Number(/feature_store_cache_requests_total\{result="miss"[^}]*\} (\d+)/.exec(t)?.[1] ?? 0);
    by.set(w, { hit, miss });
  }
  return by;
}
for (const bin of bins) {
  const dataDir = mkdtempSync(join(tmpdir(), "fs-cachehits-"));
  const now = Date.now();
  const loader = await startServer(bin, { DATA_DIR: dataDir } as StackEnv, "cw-load");
  await loadData(loader, entities, 1, now);
  await loader.stop();
  const server = await startServer(bin, { DATA_DIR: dataDir, SERVE_WORKERS: "2" } as StackEnv, "cw");
  try {
    const rnd = prng(5);
    const file = writeTargets("cw", Array.from({ length: 5000 }, () => ({ method: "POST" as const, url: `${server.url}/api/v1/features/online`, body: onlineOne(Math.floor(rnd() * entities)), headers: { "x-api-key": server.key, "content-type": "application/json" } })));
    await attack(vegeta, { name: "cw-warm", targetsFile: file, rate: 1000, seconds: 8, discard: true });
    for (const writes of [false, true]) {
      let stop = false;
      let written = 0;
      const writer = (async () => {
        let k = 0;
        while (!stop && writes) {
          const rec = record(Math.floor(rnd() * entities), 0, 1, Date.now() + k++);
          const r = await fetch(`${server.url}/api/v1/features/write`, { method: "POST", headers: { "x-api-key": server.key, "content-type": "application/json" }, body: JSON.stringify({ entity_type: ENTITY_TYPE, records: [rec] }) });
          await r.arrayBuffer();
          if (r.status === 200) written++;
          await Bun.sleep(50);
        }
      })();
      const c0 = await counts(server.url);
      const r = await attack(vegeta, { name: "cw", targetsFile: file, rate: 1000, seconds: 10 });
      stop = true;
      await writer;
      const c1 = await counts(server.url);
      let hit = 0, miss = 0;
      for (const [w, v] of c1) { hit += v.hit - (c0.get(w)?.hit ?? 0); miss += v.miss - (c0.get(w)?.miss ?? 0); }
      console.log(JSON.stringify({ bin, writes, written, workers_seen: c1.size, hit_ratio: +(hit / (hit + miss)).toFixed(4), p50: r.p50_ms, p99: r.p99_ms, errors: r.errors }));
    }
  } finally {
    await server.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
process.exit(0);
