/**
 * What the contract suite's files share: the route paths, the problem+json check, and
 * `contractOn`, which runs a file's tests once per backend against a server opened for them.
 * Each test works in its own tenant, so tests never see each other's data even on a shared
 * database.
 */
import { afterAll, beforeAll, describe, expect } from "bun:test";
import { contractBackends, TestServer, type Backend } from "../support/backends.ts";

export const R = "/api/v1/features/register";
export const W = "/api/v1/features/write";
export const O = "/api/v1/features/online";
export const B = "/api/v1/features/batch";

export function expectProblem(res: { status: number; headers: Headers; body: Record<string, unknown> }, status: number, code: string) {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toContain("application/problem+json");
  expect(res.body.code).toBe(code);
  expect(res.body.status).toBe(status);
  expect(typeof res.body.type).toBe("string");
  expect(typeof res.body.title).toBe("string");
  expect(typeof res.body.detail).toBe("string");
  expect(typeof res.body.request_id).toBe("string");
}

/** What a contract file's tests get: the backend, its server, and a tenant maker. */
export interface ContractContext {
  backend: Backend;
  /** the server of this backend (usable inside tests: it is opened before them) */
  s: TestServer;
  /** A tenant with an admin key and the given definitions registered. */
  setup(defs?: Record<string, unknown>[]): Promise<{ tenant: string; key: string }>;
}

/** Runs `body` inside `describe("contract on <backend>")` for every backend, with one server per backend and file. */
export function contractOn(body: (ctx: ContractContext) => void): void {
  for (const backend of contractBackends()) {
    describe(`contract on ${backend.name}`, () => {
      let server: TestServer | undefined;
      beforeAll(async () => {
        server = await TestServer.open(backend);
      });
      afterAll(async () => {
        await server?.close();
      });
      // the tests are declared before the server opens: `s` forwards to it once it is
      const s = new Proxy({} as TestServer, {
        get(_target, prop) {
          if (!server) throw new Error("the contract server is not open yet");
          const v: unknown = Reflect.get(server, prop, server);
          return typeof v === "function" ? v.bind(server) : v;
        },
      });
      async function setup(defs: Record<string, unknown>[] = []) {
        const tenant = TestServer.tenant();
        const key = await s.key(tenant, ["admin"]);
        for (const d of defs) {
          const r = await s.post(R, { version: 1, entity_type: "user", ...d }, key);
          expect([200, 201]).toContain(r.status);
        }
        return { tenant, key };
      }
      body({ backend, s, setup });
    });
  }
}
