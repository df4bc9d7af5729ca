/**
 * Entry point of a bulk-lane worker thread (built into the binary as a second entrypoint; see
 * scripts/build.ts). An entry, like the commands: it puts the lane (src/lane) together with what
 * it needs from the API layer (the other accepted forms of batch and write bodies). It opens its own store connection (SQLite WAL connection to the same file,
 * or its own small PostgreSQL pool), loads the registry, and runs the jobs the serving thread
 * sends (src/lane/jobs.ts).
 */
import { setPriority } from "node:os";
import { laneForms } from "../api/routes/lane-forms.ts";
import { JobRunner } from "../lane/jobs.ts";
import type { FromWorker, ToWorker } from "../lane/protocol.ts";
import { createLogger } from "../log.ts";
import { RegistryHolder } from "../serving/deps.ts";
import { scheduleThread } from "./scheduling.ts";
import { Metrics } from "../metrics.ts";
import { openDatabase, openOnlineStore } from "../stores.ts";
import type { Database, OnlineStore } from "../store/types.ts";

interface Port {
  postMessage(m: FromWorker, transfer?: Bun.Transferable[]): void;
  onmessage: ((e: MessageEvent<ToWorker>) => void) | null;
}
const port = globalThis as unknown as Port;

/** Nice value of a bulk-lane thread (the serving thread keeps the process's, usually 0). */
const BULK_NICE = 10;

let runner: JobRunner | undefined;
let db: Database | undefined;
let online: OnlineStore | undefined;

port.onmessage = (e) => {
  const m = e.data;
  if (m.t === "init") {
    void (async () => {
      try {
        // Linux nice values are per thread: this one yields the CPU to the thread answering
        // online lookups whenever both want it (bulk work just takes longer on a busy machine).
        try {
          setPriority(0, BULK_NICE);
        } catch {
          // not permitted or not supported: run at the process's priority
        }
        const log = createLogger(m.config.LOG_LEVEL, 1);
        // SCHED_BATCH and BULK_SLICE_US, keeping the nice value above: the thread inherited the
        // serving thread's short slice when it was started (see cmd/scheduling.ts)
        scheduleThread("bulk", m.config, log);
        // Its own connection (README, Architecture: how a thread opens its own stores); the main
        // thread applied the migrations, assertMigrated() checks them and prepares the connection.
        db = await openDatabase(m.config, log, undefined, { changeOrigin: m.changeOrigin, ownChangeLedger: m.ownChangeLedger });
        await db.assertMigrated();
        // starts recording this connection's commits (the serving thread counts them as its own)
        db.takeOwnChanges?.("values");
        db.takeOwnChanges?.("definitions");
        const registry = new RegistryHolder(db);
        // an online store shared across processes (Redis): this thread offers its writes' values
        // on its own connection (an in-process cache is the serving thread's, offered there)
        if (m.config.REDIS_URL) online = await openOnlineStore(m.config, log, new Metrics({ defaults: false }));
        const sharedOnline = online?.capabilities.sharedAcrossProcesses ? online : undefined;
        runner = new JobRunner({ config: m.config, stores: { registry: db, offline: db }, sharedOnline, registry, log }, (out, transfer) => port.postMessage(out, transfer), {
          reloadRegistry: true,
          chunkKeys: m.chunkKeys,
          ...laneForms,
        });
        port.postMessage({ t: "ready" });
      } catch (err) {
        port.postMessage({ t: "init_failed", message: err instanceof Error ? err.message : String(err) });
      }
    })();
  } else if (m.t === "close") {
    void Promise.allSettled([db?.close(), online?.close()]).finally(() => process.exit(0));
  } else {
    runner?.handle(m);
  }
};
