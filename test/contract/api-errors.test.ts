/**
 * Issue 10, on every backend: a key created by another process is accepted on the very next
 * request; validation errors say what to fix (one per path). Once: every response of the
 * OpenAPI document has a real example that its own schema accepts.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../../src/config.ts";
import { ERROR_CODES, type ErrorCode } from "../../src/errors.ts";
import { createLogger } from "../../src/log.ts";
import { generateKey } from "../../src/serving/keys.ts";
import type { Database } from "../../src/store/types.ts";
import { openDatabase } from "../../src/stores.ts";
import { contractBackends, TestServer } from "../support/backends.ts";

const O = "/api/v1/features/online";
const B = "/api/v1/features/batch";
const W = "/api/v1/features/write";
const R = "/api/v1/features/register";
const LIST = "/api/v1/features";

for (const backend of contractBackends()) {
  describe(`issue 10 on ${backend.name}`, () => {
    let s: TestServer;
    let other: Database;
    let dir: string | undefined;

    beforeAll(async () => {
      dir = backend.env.POSTGRES_URL ? undefined : mkdtempSync(join(tmpdir(), "fs-api-errors-"));
      const env = { ...(dir ? { DATA_DIR: dir } : {}), ...backend.env };
      s = await TestServer.open(backend, env);
      // another process's connection to the same database, as `feature-store keys create` has
      other = await openDatabase(loadConfig({ LOG_LEVEL: "silent", ...env }), createLogger("silent", 2));
      await other.migrate(); // already applied: prepares the connection
    });
    afterAll(async () => {
      await other.close();
      await s.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    test("a key created by another process works on the very next request", async () => {
      for (let i = 0; i < 3; i++) {
        const tenant = TestServer.tenant();
        const { key, row } = generateKey(tenant, ["write"], Date.now(), null);
        await other.createKey(row);
        const r = await s.get(LIST, key);
        expect([i, r.status, r.body]).toEqual([i, 200, { features: [] }]);
        expect((await s.post(W, { entity_type: "user", records: [] }, key)).status).toBe(200);
      }
    });

    test("a key revoked by another process is not brought back by lookups", async () => {
      const { key, row } = generateKey(TestServer.tenant(), ["read"], Date.now(), null);
      await other.createKey(row);
      expect((await s.get(LIST, key)).status).toBe(200);
      expect(await other.revokeKey(row.id, Date.now())).toBe(true);
      await s.deps.keys.reload(); // what the change feed does within a second
      const stranger = generateKey("nobody", ["admin"], 0, null).key;
      expect((await s.get(LIST, stranger)).status).toBe(401); // reads the keys again
      expect((await s.get(LIST, key)).status).toBe(401);
    });

    test("validation says what to fix: required, mutually exclusive, one error per path", async () => {
      const tenant = TestServer.tenant();
      const key = await s.key(tenant);
      const errors = async (path: string, body: unknown) => {
        const r = await s.post(path, body, key);
        expect([path, r.status, r.body.code]).toEqual([path, 400, "invalid_request"]);
        return r.body.errors as { path: string; message: string }[];
      };
      expect(await errors(O, { entity_id: "u" })).toEqual([{ path: "feature_names", message: "required" }]);
      expect(await errors(R, { name: "x", version: 1 })).toEqual([
        { path: "dtype", message: "required" },
        { path: "entity_type", message: "required" },
      ]);
      expect(await errors(W, { records: [{ features: {} }] })).toEqual([
        { path: "entity_type", message: "required" },
        { path: "records[0].entity_id", message: "required" },
      ]);
      expect(await errors(B, { entity_ids: ["u"], feature_names: ["f"] })).toEqual([{ path: "timestamp", message: "required" }]);
      const both = await errors(O, { entity_id: "u", entity_ids: ["v"], feature_names: ["f"] });
      expect(both).toHaveLength(1);
      expect(both[0]?.path).toBe("entity_ids");
      expect(both[0]?.message).toContain("mutually exclusive");
      expect(both[0]?.message).not.toContain("unknown field");
      const rows = await errors(B, { rows: [{ entity_id: "u", timestamp: "2024-01-01T00:00:00Z" }], entity_ids: ["u"], timestamp: "2024-01-01T00:00:00Z", feature_names: ["f"] });
      expect(rows.map((e) => e.path)).toEqual(["entity_ids", "timestamp"]);
      for (const e of rows) expect(e.message).toContain("mutually exclusive");
      expect(await errors(O, { entity_id: "", feature_names: ["f"] })).toEqual([{ path: "entity_id", message: "must not be empty" }]);
      expect(await errors(O, { entity_ids: ["a", ""], feature_names: [] })).toEqual([
        { path: "entity_ids[1]", message: "must not be empty" },
        { path: "feature_names", message: "must not be empty" },
      ]);
      // an unknown field is still called one
      expect(await errors(O, { entity_id: "u", feature_names: ["f"], extra: 1 })).toEqual([{ path: "extra", message: 'unknown field "extra"' }]);
    });
  });
}

describe("the OpenAPI document's examples", () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await TestServer.open({ name: "embedded", env: {} });
  });
  afterAll(async () => {
    await s.close();
  });

  test("every response has a real example its own schema accepts; problems show their code, status and title", async () => {
    // biome-ignore lint: the document is JSON
    const doc = (await s.get("/openapi.json")).body as any;
    // biome-ignore lint: route configs from the registry
    const routes = s.app.openAPIRegistry.definitions.filter((d) => d.type === "route").map((d) => (d as any).route);
    let checked = 0;
    for (const [path, item] of Object.entries<Record<string, { responses: Record<string, { content?: Record<string, { schema?: { $ref?: string }; example?: unknown; examples?: Record<string, { value: unknown }> }> }> }>>(doc.paths)) {
      for (const [method, op] of Object.entries(item)) {
        const route = routes.find((r) => r.method === method && r.path === path);
        expect([path, method, route !== undefined]).toEqual([path, method, true]);
        for (const [status, res] of Object.entries(op.responses)) {
          for (const [media, content] of Object.entries(res.content ?? {})) {
            const ref = content.schema?.$ref?.replace("#/components/schemas/", "");
            const examples =
              content.examples !== undefined
                ? Object.values(content.examples).map((e) => e.value)
                : [content.example ?? (ref ? doc.components.schemas[ref]?.example : undefined)];
            const where = `${method.toUpperCase()} ${path} ${status} ${media}`;
            for (const example of examples) {
              expect([where, example !== undefined]).toEqual([where, true]);
              const schema = route.responses[status].content[media].schema;
              const parsed = schema.safeParse(example);
              expect([where, parsed.success ? "valid" : parsed.error.message]).toEqual([where, "valid"]);
              if (media === "application/problem+json") {
                const code = (example as { code: ErrorCode }).code;
                expect([where, (example as { status: number }).status, ERROR_CODES[code].status, (example as { title: string }).title]).toEqual([where, Number(status), Number(status), ERROR_CODES[code].title]);
              }
              checked++;
            }
          }
        }
      }
    }
    expect(checked).toBeGreaterThan(50);
    // the online 200 shows a real answer, not `additionalProp1`
    expect(JSON.stringify(doc.paths[O].post.responses["200"])).toContain("user_123");
  });
});
