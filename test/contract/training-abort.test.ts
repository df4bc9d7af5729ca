/**
 * A failure after a training-data stream began (here: the offline store becomes unavailable after
 * the first chunk) ends NDJSON
 * with the contract's error line and aborts every other format's body, so no client can take a
 * truncated answer for a complete one.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { StoreUnavailable } from "../../src/store/errors.ts";
import { FaultyOfflineStore } from "../support/faulty-store.ts";
import { TestServer } from "../support/backends.ts";

const CHUNK = 8_192; // rows per dataframe chunk
// six chunks: the lane computes one or two ahead of the reader, the store breaks after the first is read
const ROWS = 5 * CHUNK + 100;

async function start(): Promise<{ s: TestServer; key: string; body: string }> {
  // BULK_WORKERS=0: the lane's code runs on this thread, with the stores the fault is injected into
  const s = await TestServer.open({ name: "embedded", env: {} }, { BULK_WORKERS: "0" });
  const key = await s.key(TestServer.tenant(), ["admin"]);
  expect((await s.post("/api/v1/features/register", { name: "f", version: 1, dtype: "int64", entity_type: "user" }, key)).status).toBe(201);
  // a new entity per row, so every chunk reads the store (a chunk of entities seen before is answered from the histories held)
  const entity_rows = Array.from({ length: ROWS }, (_, i) => ({ user_id: `u${i}`, timestamp: "2024-01-01T00:00:00Z" }));
  return { s, key, body: JSON.stringify({ entity_rows, feature_names: ["f"] }) };
}

/** From now on, every as-of read of `s` fails as an outage would. */
function breakStore(s: TestServer): void {
  const faulty = new FaultyOfflineStore(s.deps.stores.offline);
  faulty.asOfFault = () => new StoreUnavailable("SQLite", "injected outage");
  s.deps.stores = { ...s.deps.stores, offline: faulty };
}

describe("a failure after the stream began", () => {
  let server: TestServer | undefined;
  afterEach(async () => {
    await server?.close().catch(() => {});
    server = undefined;
  });

  test("NDJSON: rows, then a last line {error: PROBLEM}", async () => {
    const { s, key, body } = await start();
    server = s;
    const res = await s.app.request("/api/v1/features/batch", { method: "POST", headers: { "x-api-key": key, "content-type": "application/json", accept: "application/x-ndjson" }, body });
    expect(res.status).toBe(200);
    breakStore(s);
    const lines = (await res.text()).trimEnd().split("\n");
    const rows = lines.length - 1;
    expect(rows % CHUNK).toBe(0); // whole chunks only
    expect(rows).toBeGreaterThan(0);
    expect(rows).toBeLessThan(ROWS);
    const last = JSON.parse(lines.at(-1) as string) as { error: { status: number; code: string } };
    expect(last.error.status).toBe(503);
    expect(last.error.code).toBe("unavailable");
  });

  for (const accept of ["application/vnd.apache.parquet", "application/vnd.apache.arrow.stream", "text/csv", "application/json"]) {
    test(`${accept}: the body is aborted, not ended`, async () => {
      const { s, key, body } = await start();
      server = s;
      const res = await s.app.request("/api/v1/features/batch", { method: "POST", headers: { "x-api-key": key, "content-type": "application/json", accept }, body });
      expect(res.status).toBe(200);
      breakStore(s);
      await expect(res.arrayBuffer()).rejects.toThrow();
    });
  }
});
