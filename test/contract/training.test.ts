/**
 * Training data from entity dataframes (`POST /api/v1/features/batch` with `entity_rows` or a
 * CSV/NDJSON/Parquet body, answered as JSON/NDJSON/CSV/Parquet/Arrow) against a brute-force
 * oracle, on every backend: random histories with ties, TTL edges, out-of-order writes, two
 * entity types, missing and null ids. Plus the request errors (400/406/415) naming row or column.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { tableFromIPC } from "apache-arrow";
import { parquetReadObjects } from "hyparquet";
import { parse as parseCsv } from "csv-parse/sync";
import { prng } from "../../src/lib/prng.ts";
import { shortestFloat32 } from "../../src/registry/dtype.ts";
import { contractBackends, TestServer } from "../support/backends.ts";
import { parquetFile } from "../support/parquet.ts";

const R = "/api/v1/features/register";
const W = "/api/v1/features/write";
const B = "/api/v1/features/batch";
const H = 3_600_000;
const T0 = Date.parse("2024-03-01T00:00:00Z");

interface FeatureSpec {
  name: string;
  dtype: string;
  entity_type: "user" | "merchant";
  ttl_hours?: number;
  gen: (rnd: () => number, k: number) => unknown;
}

const FEATURES: FeatureSpec[] = [
  { name: "u_count", dtype: "int64", entity_type: "user", ttl_hours: 2, gen: (_r, k) => (k % 3 === 0 ? String(2n ** 60n + BigInt(k)) : k) },
  { name: "u_vec", dtype: "float32[]", entity_type: "user", gen: (r, k) => [k / 10, Math.fround(r())] },
  { name: "u_name", dtype: "string", entity_type: "user", ttl_hours: 1, gen: (_r, k) => `name "${k}", ok` },
  { name: "m_risk", dtype: "float64", entity_type: "merchant", ttl_hours: 0.5, gen: (r, k) => k + r() },
  { name: "m_seen", dtype: "timestamp", entity_type: "merchant", gen: (_r, k) => new Date(T0 + k * 1000).toISOString() },
  { name: "m_flag", dtype: "bool", entity_type: "merchant", gen: (_r, k) => k % 2 === 0 },
];
const REFS = FEATURES.map((f) => f.name);

interface Stored {
  et: number;
  seq: number;
  json: unknown;
}

/** The JSON form the API serves for a value written as `v`. */
function served(f: FeatureSpec, v: unknown): unknown {
  if (f.dtype === "float32[]") return (v as number[]).map((x) => shortestFloat32(Math.fround(x)));
  if (f.dtype === "int64" && typeof v === "string") return v;
  return v;
}

/** Canonical text of a JSON-form value (how CSV carries it): null -> "". */
function canon(v: unknown): string {
  if (v === null || v === undefined) return "";
  return typeof v === "string" ? v : JSON.stringify(v);
}

const USERS = ["u0", "u1", "u2", "u3"];
const MERCHANTS = ["m0", "m1", "m2"];
const TIME_COLUMNS = new Set(["ts", "m_seen"]);
/** Per-test timeout: thousands of rows through every format, on a shared machine (behaviour, not timing). */
const SLOW = 120_000;

function parseCsvRows(text: string): Record<string, string>[] {
  // throws on malformed CSV or a row whose field count differs from the header's
  return parseCsv<Record<string, string>>(text, { columns: true, skip_empty_lines: true });
}

/** A decoded typed cell (Parquet/Arrow) as its canonical text. */
function typedCanon(name: string, v: unknown): string {
  if (v === null || v === undefined) return "";
  if (TIME_COLUMNS.has(name)) return new Date(v instanceof Date ? v.getTime() : Number(v)).toISOString();
  if (typeof v === "bigint") return canon(v >= -(2n ** 53n) + 1n && v <= 2n ** 53n - 1n ? Number(v) : v.toString());
  if (name === "u_vec") return canon(Array.from(v as ArrayLike<number>, shortestFloat32));
  if (typeof v === "object" && v !== null && "toArray" in v) return canon(Array.from((v as { toArray(): ArrayLike<number> }).toArray(), shortestFloat32));
  return canon(v);
}

for (const backend of contractBackends()) {
  describe(`training data on ${backend.name}`, () => {
    let s: TestServer;
    let key: string;
    const history = new Map<string, Stored[]>(); // feature|entity -> stored values
    const entityRows: Record<string, unknown>[] = [];
    let expected: Record<string, string>[] = [];

    beforeAll(async () => {
      s = await TestServer.open(backend);
      const tenant = TestServer.tenant();
      key = await s.key(tenant, ["admin"]);
      for (const f of FEATURES) {
        const { gen: _g, ...def } = f;
        expect((await s.post(R, { version: 1, ...def }, key)).status).toBe(201);
      }
      const rnd = prng(20261202);
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
      // few distinct event times (ties), written in random order (out of order)
      const times = Array.from({ length: 8 }, (_, i) => T0 + i * 20 * 60_000 + (i % 2));
      let seq = 0;
      let k = 1;
      for (let round = 0; round < 40; round++) {
        for (const etype of ["user", "merchant"] as const) {
          const ids = etype === "user" ? USERS : MERCHANTS;
          const records = ids.map((id) => {
            const feats = FEATURES.filter((f) => f.entity_type === etype && rnd() < 0.5);
            const et = pick(times);
            const features: Record<string, unknown> = {};
            for (const f of feats) {
              const v = f.gen(rnd, k++);
              features[f.name] = v;
              const h = history.get(`${f.name}|${id}`) ?? [];
              // an identical re-send (same event time and value) is not stored again
              if (!h.some((x) => x.et === et && canon(x.json) === canon(served(f, v)))) h.push({ et, seq, json: served(f, v) });
              seq++;
              history.set(`${f.name}|${id}`, h);
            }
            return { entity_id: id, event_time: new Date(et).toISOString(), features };
          });
          const r = await s.post(W, { entity_type: etype, records: records.filter((x) => Object.keys(x.features).length > 0) }, key);
          expect(r.status).toBe(200);
        }
      }
      // row timestamps: on, just before and just after the event times, and exactly at TTL edges
      const ats: number[] = [];
      for (const t of times) ats.push(t, t - 1, t + 1, t + 0.5 * H, t + 0.5 * H - 1, t + H, t + H - 1, t + 2 * H, t + 2 * H - 1);
      ats.push(T0 - H, T0 + 10 * H);
      // more rows than one chunk (8,192) and one database call (20,000 keys): chunk boundaries are covered
      for (let i = 0; i < 8_500; i++) {
        const u = rnd() < 0.1 ? (rnd() < 0.5 ? "u_never" : null) : pick(USERS);
        const m = rnd() < 0.1 ? "m_never" : pick(MERCHANTS);
        entityRows.push({ request_id: `r${i}`, user_id: u, merchant_id: m, ts: new Date(pick(ats)).toISOString(), label: Math.floor(rnd() * 3), split: rnd() < 0.8 ? "train" : "test" });
      }
      // the oracle
      expected = entityRows.map((row) => {
        const at = Date.parse(row.ts as string);
        const out: Record<string, string> = {};
        for (const [c, v] of Object.entries(row)) out[c] = canon(v);
        for (const f of FEATURES) {
          const id = (f.entity_type === "user" ? row.user_id : row.merchant_id) as string | null;
          let best: Stored | undefined;
          for (const h of id === null ? [] : (history.get(`${f.name}|${id}`) ?? [])) {
            if (h.et > at) continue;
            if (!best || h.et > best.et || (h.et === best.et && h.seq > best.seq)) best = h;
          }
          let status = "present";
          let value: unknown = best?.json ?? null;
          if (!best) status = "not_found";
          else if (f.ttl_hours !== undefined && best.et <= at - f.ttl_hours * H) {
            status = "expired";
            value = null;
          }
          out[f.name] = canon(value);
          out[`${f.name}__status`] = status;
        }
        return out;
      });
      expect(expected.some((e) => e.u_count__status === "expired")).toBe(true);
      expect(expected.some((e) => e.m_risk__status === "present")).toBe(true);
      expect(expected.some((e) => e.u_vec__status === "not_found")).toBe(true);
    }, SLOW);
    afterAll(async () => {
      await s.close();
    });

    const body = () => ({ entity_rows: entityRows, feature_names: REFS, timestamp_column: "ts" });
    const q = `?feature_names=${REFS.join(",")}&timestamp_column=ts`;
    const COLUMNS = ["request_id", "user_id", "merchant_id", "ts", "label", "split", ...REFS.flatMap((r) => [r, `${r}__status`])];

    async function raw(payload: unknown, accept: string, path = B, headers: Record<string, string> = {}): Promise<Response> {
      const h: Record<string, string> = { "x-api-key": key, accept, "content-type": "application/json", ...headers };
      const b = typeof payload === "string" || payload instanceof Uint8Array ? payload : JSON.stringify(payload);
      return s.app.request(path, { method: "POST", headers: h, body: b });
    }

    test("JSON in, JSON out equals the oracle (columns in order, labels passed through)", async () => {
      const res = await raw(body(), "application/json");
      expect(res.status).toBe(200);
      const rows = ((await res.json()) as { rows: Record<string, unknown>[] }).rows;
      expect(Object.keys(rows[0] as object)).toEqual(COLUMNS);
      expect(rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, canon(v)])))).toEqual(expected);
    }, SLOW);

    test("NDJSON out equals the oracle", async () => {
      const res = await raw(body(), "application/x-ndjson");
      expect(res.headers.get("content-type")).toContain("application/x-ndjson");
      const lines = (await res.text()).trimEnd().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, canon(v)])))).toEqual(expected);
    }, SLOW);

    test("CSV out equals the oracle", async () => {
      const res = await raw(body(), "text/csv");
      expect(res.headers.get("content-type")).toContain("text/csv");
      expect(parseCsvRows(await res.text())).toEqual(expected);
    }, SLOW);

    test("Parquet out: typed columns, equals the oracle", async () => {
      const res = await raw(body(), "application/vnd.apache.parquet");
      expect(res.headers.get("content-type")).toBe("application/vnd.apache.parquet");
      const buf = await res.arrayBuffer();
      const rows = (await parquetReadObjects({ file: buf })) as Record<string, unknown>[];
      expect(typeof rows.find((r) => r.u_count !== null)?.u_count).toBe("bigint");
      expect(rows.find((r) => r.m_seen !== null)?.m_seen).toBeInstanceOf(Date);
      expect(rows.map((r) => Object.fromEntries(COLUMNS.map((c) => [c, typedCanon(c, r[c])])))).toEqual(expected);
    }, SLOW);

    test("Arrow IPC stream out: typed columns, equals the oracle", async () => {
      const res = await raw(body(), "application/vnd.apache.arrow.stream");
      expect(res.headers.get("content-type")).toBe("application/vnd.apache.arrow.stream");
      const table = tableFromIPC(new Uint8Array(await res.arrayBuffer()));
      expect(table.schema.fields.map((f) => f.name)).toEqual(COLUMNS);
      expect(String(table.schema.fields.find((f) => f.name === "u_vec")?.type)).toBe("List<Float32>");
      expect(String(table.schema.fields.find((f) => f.name === "u_count")?.type)).toBe("Int64");
      expect(String(table.schema.fields.find((f) => f.name === "ts")?.type)).toContain("Timestamp");
      const rows: Record<string, string>[] = [];
      for (let i = 0; i < table.numRows; i++) {
        const r = table.get(i) as unknown as Record<string, unknown>;
        rows.push(Object.fromEntries(COLUMNS.map((c) => [c, typedCanon(c, r[c])])));
      }
      expect(rows).toEqual(expected);
    }, SLOW);

    test("CSV, NDJSON and Parquet bodies give the same answer as JSON", async () => {
      const csv = [COLUMNS.slice(0, 6).join(","), ...entityRows.map((r) => COLUMNS.slice(0, 6).map((c) => canon(r[c])).join(","))].join("\n");
      const ndjson = entityRows.map((r) => JSON.stringify(r)).join("\n");
      const parquet = parquetFile([
        { name: "request_id", type: "string", data: entityRows.map((r) => r.request_id) },
        { name: "user_id", type: "string", nullable: true, data: entityRows.map((r) => r.user_id) },
        { name: "merchant_id", type: "string", nullable: true, data: entityRows.map((r) => r.merchant_id) },
        { name: "ts", type: "timestamp", data: entityRows.map((r) => BigInt(Date.parse(r.ts as string))) },
        { name: "label", type: "int64", data: entityRows.map((r) => BigInt(r.label as number)) },
        { name: "split", type: "string", data: entityRows.map((r) => r.split) },
      ]);
      for (const [ct, payload] of [
        ["text/csv", csv],
        ["application/x-ndjson", ndjson],
        ["application/vnd.apache.parquet", parquet],
      ] as const) {
        const res = await raw(payload, "text/csv", `${B}${q}`, { "content-type": ct });
        expect(res.status).toBe(200);
        expect(parseCsvRows(await res.text())).toEqual(expected);
      }
    }, SLOW);

    test("the contract forms can be asked for as CSV", async () => {
      const res = await raw({ entity_ids: ["u1", "nobody"], feature_names: ["u_name"], timestamp: new Date(T0 + 10 * H).toISOString() }, "text/csv");
      expect(res.status).toBe(200);
      const rows = parseCsvRows(await res.text());
      expect(rows.map((r) => r.entity_id)).toEqual(["u1", "nobody"]);
      expect(rows[1]?.u_name__status).toBe("not_found");
    }, SLOW);

    test("errors name the row or column: missing entity column, bad timestamp, not Parquet, unknown Accept and Content-Type", async () => {
      const rows = entityRows.slice(0, 5).map(({ merchant_id: _m, ...r }) => r);
      let res = await raw({ entity_rows: rows, feature_names: REFS, timestamp_column: "ts" }, "application/json");
      expect(res.status).toBe(400);
      let p = (await res.json()) as { detail: string; errors: { path: string }[] };
      expect(p.detail).toContain("merchant_id");

      res = await raw({ entity_rows: rows, feature_names: ["u_count"], entity_columns: { user: "uid" }, timestamp_column: "ts" }, "application/json");
      p = (await res.json()) as typeof p;
      expect(res.status).toBe(400);
      expect(p.errors[0]?.path).toBe("entity_columns.user");

      const bad = entityRows.slice(0, 5).map((r, i) => ({ ...r, ts: i === 3 ? "yesterday" : r.ts }));
      res = await raw({ entity_rows: bad, feature_names: REFS, timestamp_column: "ts" }, "text/csv");
      p = (await res.json()) as typeof p;
      expect(res.status).toBe(400);
      expect(p.errors[0]?.path).toBe("rows[3].ts");
      expect(p.detail).toContain("row 3");

      res = await raw("PAR1 this is not parquet", "text/csv", `${B}${q}`, { "content-type": "application/vnd.apache.parquet" });
      p = (await res.json()) as typeof p;
      expect(res.status).toBe(400);
      expect(p.detail).toContain("not a Parquet file");

      res = await raw(body(), "image/png");
      expect(res.status).toBe(406);
      expect(((await res.json()) as { code: string }).code).toBe("not_acceptable");

      res = await raw("a=b", "application/json", B, { "content-type": "application/x-www-form-urlencoded" });
      expect(res.status).toBe(415);
      expect(((await res.json()) as { code: string }).code).toBe("unsupported_media_type");

      res = await raw("request_id,ts\nr1,2024-01-01T00:00:00Z\n", "text/csv", B, { "content-type": "text/csv" });
      p = (await res.json()) as typeof p;
      expect(res.status).toBe(400);
      expect(p.errors[0]?.path).toBe("feature_names");

      res = await raw({ entity_rows: [{ user_id: "u1", ts: "2024-01-01T00:00:00Z", u_count: 1 }], feature_names: ["u_count"], timestamp_column: "ts" }, "application/json");
      expect(res.status).toBe(400);

      res = await raw({ entity_rows: [{ user_id: "u1", ts: "2024-01-01T00:00:00Z" }], feature_names: ["nope"], timestamp_column: "ts" }, "application/json");
      expect(res.status).toBe(404);
    }, SLOW);
  });
}
