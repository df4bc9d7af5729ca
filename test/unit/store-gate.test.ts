/**
 * The bulk lane's store gate (src/lane/store-gate.ts): one offline-store statement at a time per
 * lane thread, in arrival order, each call's own work starting only when its turn comes.
 */
import { describe, expect, test } from "bun:test";
import { Gate, gateOffline } from "../../src/lane/store-gate.ts";
import type { AsOfKey, OfflineStore, ValueWrite } from "../../src/store/types.ts";

/** A promise and its resolve/reject, to hold a call open until the test lets it finish. */
const hold = <T = void>() => Promise.withResolvers<T>();

describe("Gate", () => {
  test("lets `limit` callers through at once; the others wait and go in arrival order", async () => {
    const gate = new Gate(1);
    const order: string[] = [];
    const a = hold();
    const b = hold();
    const pa = gate.run(async () => {
      order.push("a starts");
      await a.promise;
      order.push("a ends");
    });
    const pb = gate.run(async () => {
      order.push("b starts");
      await b.promise;
      order.push("b ends");
    });
    const pc = gate.run(async () => {
      order.push("c runs");
      return 3;
    });
    await Bun.sleep(0);
    expect(order).toEqual(["a starts"]);
    expect(gate.state).toEqual({ held: 1, waiting: 2 });
    a.resolve();
    await pa;
    await Bun.sleep(0);
    expect(order).toEqual(["a starts", "a ends", "b starts"]);
    b.resolve();
    expect(await pc).toBe(3);
    await pb;
    expect(order).toEqual(["a starts", "a ends", "b starts", "b ends", "c runs"]);
    expect(gate.state).toEqual({ held: 0, waiting: 0 });
  });

  test("a call that throws gives its place to the next one, and its error to its caller", async () => {
    const gate = new Gate(1);
    const failing = gate.run(async () => {
      throw new Error("boom");
    });
    const next = gate.run(async () => "next");
    await expect(failing).rejects.toThrow("boom");
    expect(await next).toBe("next");
    expect(gate.state).toEqual({ held: 0, waiting: 0 });
  });

  test("a limit of 2 runs two at once", async () => {
    const gate = new Gate(2);
    const h = hold();
    let running = 0;
    let most = 0;
    const calls = Array.from({ length: 5 }, () =>
      gate.run(async () => {
        running++;
        most = Math.max(most, running);
        await h.promise;
        running--;
      }),
    );
    await Bun.sleep(0);
    expect(running).toBe(2);
    h.resolve();
    await Promise.all(calls);
    expect(most).toBe(2);
    expect(() => new Gate(0)).toThrow();
  });
});

describe("gateOffline", () => {
  test("the offline calls of two jobs never overlap: a write waits for the read in progress, then runs", async () => {
    const events: string[] = [];
    const read = hold<null[]>();
    const store: OfflineStore = {
      writeValues: async (rows) => {
        events.push(`write ${rows.length}`);
        return rows.map((_, i) => ({ seq: i + 1, status: "stored" as const }));
      },
      getLatest: async () => [],
      getAsOf: async (keys) => {
        events.push(`read ${keys.length} starts`);
        const r = await read.promise;
        events.push("read ends");
        return r;
      },
      getHistory: async () => [],
      ping: async () => {},
      close: async () => {},
    };
    const gated = gateOffline(store, new Gate(1));
    const keys: AsOfKey[] = [{ feature_id: 1, entity_id: "e", at: 1 }];
    const row: ValueWrite = { feature_id: 1, entity_id: "e", event_time: 1, value: new Uint8Array([1]), value_hash: new Uint8Array(16) };
    const r = gated.getAsOf(keys);
    const w = gated.writeValues([row]);
    await Bun.sleep(5);
    // the write has not started: the read holds the gate
    expect(events).toEqual(["read 1 starts"]);
    // ping and close are not statements of a job: never gated
    await gated.ping();
    read.resolve([null]);
    expect(await r).toEqual([null]);
    expect(await w).toEqual([{ seq: 1, status: "stored" }]);
    expect(events).toEqual(["read 1 starts", "read ends", "write 1"]);
  });
});
