/**
 * The backends the contract suite runs against, and an in-process client for the app built on
 * one of them. Embedded always; PostgreSQL + Redis and PostgreSQL + Redis Cluster when the test
 * runner (scripts/test.ts) provides them, and required in CI (never skipped silently).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { createApp, type ServerState } from "../../src/app.ts";
import { laneForms } from "../../src/api/routes/lane-forms.ts";
import { BulkLane, laneOptions, type LaneOptions } from "../../src/lane/pool.ts";
import { buildDeps, closeDeps } from "../../src/cmd/common.ts";
import { loadConfig, type Config } from "../../src/config.ts";
import { createLogger } from "../../src/log.ts";
import { followChanges } from "../../src/serving/changes.ts";
import { openDatabase } from "../../src/stores.ts";
import type { Deps } from "../../src/serving/deps.ts";
import { generateKey, type Scope } from "../../src/serving/keys.ts";

/** A backend configuration: environment overrides for the stores. */
export interface Backend {
  name: string;
  env: Record<string, string>;
}

/** Backends to run: embedded, plus production stacks named by the environment. */
export function contractBackends(): Backend[] {
  const out: Backend[] = [{ name: "embedded", env: {} }];
  const pg = process.env.TEST_POSTGRES_URL;
  const redis = process.env.TEST_REDIS_URL;
  const cluster = process.env.TEST_REDIS_CLUSTER_URLS;
  if (pg && redis) out.push({ name: "postgres+redis", env: { POSTGRES_URL: pg, REDIS_URL: redis } });
  if (pg && cluster) out.push({ name: "postgres+redis-cluster", env: { POSTGRES_URL: pg, REDIS_URL: cluster, REDIS_CLUSTER: "true" } });
  if (process.env.CI && out.length < 3) {
    throw new Error("CI must run the contract suite on every backend: TEST_POSTGRES_URL, TEST_REDIS_URL and TEST_REDIS_CLUSTER_URLS are required (run via `npm test`)");
  }
  return out;
}

/**
 * Deps on the stores `env` names, silent, event-loop lag guard off, PostgreSQL migrated first,
 * following other processes' changes as `serve` does.
 */
export async function openTestDeps(env: Record<string, string>): Promise<Deps> {
  // Called in process, the app sees no socket backlog; the lag guard (which the loaded test
  // machine would trip) is off unless a test asks for it.
  const cfg: Config = loadConfig({ LOG_LEVEL: "silent", MAX_EVENT_LOOP_LAG_MS: "0", ...env });
  const log = createLogger("silent", 2);
  if (cfg.POSTGRES_URL) {
    const db = await openDatabase(cfg, log);
    await db.migrate();
    await db.close();
  }
  const deps = await buildDeps(cfg, { log });
  followChanges(deps);
  return deps;
}

/** A response as the tests see it. */
export interface Res {
  status: number;
  headers: Headers;
  // biome-ignore lint: JSON of any shape
  body: any;
  text: string;
}

/** An app on a backend, called in process, plus helpers to make tenants and keys. */
export class TestServer {
  readonly state: ServerState = { draining: false };
  readonly app: ReturnType<typeof createApp>;
  /** The bulk lane (worker threads, as `serve` runs it) answering batches and writes. */
  readonly lane: BulkLane;

  private constructor(
    readonly deps: Deps,
    private readonly dataDir: string | undefined,
    lane: Partial<LaneOptions>,
  ) {
    this.lane = new BulkLane(deps, { ...laneOptions(deps.config), ...laneForms, ...lane });
    this.app = createApp(deps, this.state, "test", { lane: this.lane });
  }

  /** Opens the backend (migrated), with config overrides (and lane options beyond the settings, e.g. a small `chunkKeys`). */
  static async open(backend: Backend, overrides: Record<string, string> = {}, lane: Partial<LaneOptions> = {}): Promise<TestServer> {
    const dataDir = backend.env.POSTGRES_URL ? undefined : mkdtempSync(join(tmpdir(), "fs-contract-"));
    const deps = await openTestDeps({ ...(dataDir ? { DATA_DIR: dataDir } : {}), ...backend.env, ...overrides });
    return new TestServer(deps, dataDir, lane);
  }

  /** A new, unique tenant name (tenants isolate tests from each other on a shared database). */
  static tenant(): string {
    return `t_${randomBytes(6).toString("hex")}`;
  }

  /** Creates an API key for a tenant and makes this server know it. */
  async key(tenant: string, scopes: Scope[] = ["admin"]): Promise<string> {
    const { key, row } = generateKey(tenant, scopes, Date.now(), null);
    await this.deps.stores.registry.createKey(row);
    await this.deps.keys.reload();
    return key;
  }

  /** Calls the app. `body` is JSON-encoded unless it is a string or bytes. */
  async call(method: string, path: string, body?: unknown, opts: { key?: string; headers?: Record<string, string> } = {}): Promise<Res> {
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    if (opts.key) headers["x-api-key"] = opts.key;
    let payload: string | Uint8Array | undefined;
    if (body !== undefined) {
      payload = typeof body === "string" || body instanceof Uint8Array ? body : JSON.stringify(body);
      headers["content-type"] ??= "application/json";
      // as an HTTP client sends it (a Request built in process has none): the online fast path
      // (src/api/fast-online.ts) takes only requests with a length, as `serve` receives them
      headers["content-length"] ??= String(typeof payload === "string" ? Buffer.byteLength(payload) : payload.byteLength);
    }
    const res = await this.app.request(path, { method, headers, body: payload });
    const text = await res.text();
    let parsed: unknown = undefined;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    return { status: res.status, headers: res.headers, body: parsed, text };
  }

  post(path: string, body: unknown, key?: string, headers?: Record<string, string>): Promise<Res> {
    return this.call("POST", path, body, { ...(key ? { key } : {}), ...(headers ? { headers } : {}) });
  }

  get(path: string, key?: string): Promise<Res> {
    return this.call("GET", path, undefined, key ? { key } : {});
  }

  async close(): Promise<void> {
    await this.lane.close();
    await closeDeps(this.deps);
    if (this.dataDir) rmSync(this.dataDir, { recursive: true, force: true });
  }
}
