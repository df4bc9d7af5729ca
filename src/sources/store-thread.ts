/**
 * Entry point of a `materialize` run's store thread (./store-thread-client.ts; built into the
 * binary as an entrypoint of its own, see scripts/build.ts): its own connection to the embedded
 * database, a sibling of the main thread's, running the writes it is sent one at a time.
 */
import { isStoreUnavailable, StoreUnavailable } from "../store/errors.ts";
import { SqliteDatabase } from "../store/sqlite/database.ts";
import { unpackColumns, type FromStoreThread, type ToStoreThread } from "./store-thread-client.ts";

interface Port {
  postMessage(m: FromStoreThread, transfer?: Bun.Transferable[]): void;
  onmessage: ((e: MessageEvent<ToStoreThread>) => void) | null;
}
const port = globalThis as unknown as Port;

let db: SqliteDatabase | undefined;

/**
 * This thread's heap above which a write is followed by a collection. A chunk leaves tens of
 * MiB of garbage here (its rows, their byte views, the statements' parameters), which the
 * collector left alone lets pile up past the load's memory budget.
 */
const GC_ABOVE_HEAP = 32 * 2 ** 20;

function collect(): void {
  if (process.memoryUsage().heapUsed > GC_ABOVE_HEAP) Bun.gc(true);
}

function failed(id: number, err: unknown): FromStoreThread {
  return {
    t: "failed",
    id,
    message: err instanceof Error ? err.message : String(err),
    unavailable: isStoreUnavailable(err),
    store: err instanceof StoreUnavailable ? err.store : "sqlite",
  };
}

// Messages are handled in the order they arrive; each call below is synchronous under its
// promise (bun:sqlite), so one finishes before the next starts.
port.onmessage = (e) => {
  const m = e.data;
  if (m.t === "init") {
    void (async () => {
      try {
        db = new SqliteDatabase({ dataDir: m.dataDir, ownChangeLedger: m.ownChangeLedger });
        // the main thread opened (and migrated) the file; this checks it and prepares the connection
        await db.assertMigrated();
        db.setCacheSize(m.cacheMib);
        db.setWalAutocheckpoint(m.walPages);
        port.postMessage({ t: "ready" });
      } catch (err) {
        port.postMessage({ t: "init_failed", message: err instanceof Error ? err.message : String(err) });
      }
    })();
  } else if (m.t === "write") {
    const conn = db as SqliteDatabase;
    conn.writeColumns(unpackColumns(m.rows), m.rows.order).then(
      ({ seqs, stored }) => {
        port.postMessage({ t: "written", id: m.id, seqs, stored }, [seqs.buffer, stored.buffer]);
        collect();
      },
      (err: unknown) => port.postMessage(failed(m.id, err)),
    );
  } else if (m.t === "state") {
    (db as SqliteDatabase).sources.putSourceState(m.tenant, m.name, m.state, m.now).then(
      () => port.postMessage({ t: "done", id: m.id }),
      (err: unknown) => port.postMessage(failed(m.id, err)),
    );
  } else if (m.t === "close") {
    void Promise.resolve(db?.close()).finally(() => process.exit(0));
  }
};
