/**
 * Shared by the reliability suites: the compiled binary as a child process (its log output
 * captured), the CLI, a bounded load loop, polling, and small statistics. Everything binds
 * 127.0.0.1; every loop is bounded in count and time.
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { freePort } from "../harness/services.ts";

export const ROOT = resolve(import.meta.dir, "../..");
export const BIN = resolve(process.env.FS_BINARY ?? join(ROOT, "dist/feature-store"));

/** Throws (never skips) when the binary is missing: the test runner builds it first. */
export function requireBinary(): void {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run \`bun run build\` first (npm test does)`);
}

/** Result of a CLI run. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the binary's CLI to completion. */
export function cli(args: string[], env: Record<string, string>): CliRun {
  const p = Bun.spawnSync([BIN, ...args], { env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...env }, stdout: "pipe", stderr: "pipe", cwd: ROOT });
  return { code: p.exitCode ?? -1, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

/** Creates a key with the CLI; returns the key (the last stdout line) and its id. */
export function createKey(env: Record<string, string>, tenant: string, scopes: string, extra: string[] = []): { key: string; id: string; stdout: string; stderr: string } {
  const r = cli(["keys", "create", "--tenant", tenant, "--scopes", scopes, ...extra], env);
  if (r.code !== 0) throw new Error(`keys create failed (${r.code}): ${r.stderr}`);
  const key = r.stdout.trimEnd().split("\n").at(-1) ?? "";
  const id = /created key (key_[0-9a-f]+)/.exec(r.stdout)?.[1] ?? "";
  return { key, id, stdout: r.stdout, stderr: r.stderr };
}

/** Polls `check` every `everyMs` until it returns true; throws with `what` after `timeoutMs`. */
export async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 30_000, everyMs = 50): Promise<number> {
  const start = performance.now();
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return performance.now() - start;
    } catch {
      // not yet
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(everyMs);
  }
}

/** A running `feature-store serve` (or `worker`) with its output captured. */
export class Server {
  private out = "";
  private readonly pumps: Promise<void>[];

  private constructor(
    readonly proc: ReturnType<typeof Bun.spawn<"ignore", "pipe", "pipe">>,
    readonly port: number,
  ) {
    const pump = async (s: ReadableStream<Uint8Array>) => {
      const dec = new TextDecoder();
      for await (const chunk of s) this.out += dec.decode(chunk, { stream: true });
    };
    this.pumps = [pump(proc.stdout), pump(proc.stderr)];
  }

  /**
   * Starts `serve` on a free port and waits for /healthz. One process unless `env` says
   * otherwise: these suites count inside the server (its metrics, its admission, its drain).
   */
  static async start(env: Record<string, string>, opts: { port?: number; waitReady?: boolean } = {}): Promise<Server> {
    const port = opts.port ?? (await freePort());
    const proc = Bun.spawn([BIN, "serve", "--port", String(port), "--host", "127.0.0.1"], {
      env: { PATH: process.env.PATH ?? "", SERVE_WORKERS: "1", ...env },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    const s = new Server(proc, port);
    try {
      await until(`server on port ${port}`, async () => (await fetch(`${s.base}/healthz`)).ok, 30_000);
      if (opts.waitReady !== false) await until(`server on port ${port} ready`, async () => (await fetch(`${s.base}/readyz`)).ok, 30_000);
    } catch (e) {
      proc.kill("SIGKILL");
      throw new Error(`${(e as Error).message}\n--- server output ---\n${s.out.slice(-4000)}`);
    }
    return s;
  }

  /** Starts `worker` (no HTTP wait). */
  static spawnWorker(env: Record<string, string>): Server {
    const proc = Bun.spawn([BIN, "worker"], { env: { PATH: process.env.PATH ?? "", ...env }, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    return new Server(proc, 0);
  }

  get base(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Everything the process wrote to stdout and stderr so far. */
  get output(): string {
    return this.out;
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Sends `signal` and waits for the exit (SIGKILL after `graceMs`). Returns the exit code. */
  async stop(signal: NodeJS.Signals = "SIGTERM", graceMs = 20_000): Promise<number | null> {
    if (this.running) {
      this.proc.kill(signal);
      const timer = setTimeout(() => this.proc.kill("SIGKILL"), graceMs);
      await this.proc.exited;
      clearTimeout(timer);
    }
    await Promise.all(this.pumps);
    return this.proc.exitCode;
  }
}

/** One request's outcome in a load run. */
export interface Outcome {
  /** Index of the request in its run. */
  i?: number;
  /** HTTP status, or 0 when the request failed without a response (refused, reset). */
  status: number;
  ms: number;
  /** Error name/message when there was no response. */
  error?: string;
  /** Time the request started, ms since the run began. */
  at: number;
}

/** Counts and latency percentiles of a load run. */
export interface LoadReport {
  requests: number;
  seconds: number;
  byStatus: Record<string, number>;
  errors: Record<string, number>;
  p50: number;
  p99: number;
  max: number;
}

/**
 * A closed-loop load generator: `concurrency` loops, each sending one request after another,
 * until `stop()` (or `maxRequests` / `maxMs`, whichever first). Bounded by construction.
 */
export class LoadLoop {
  readonly outcomes: Outcome[] = [];
  private stopped = false;
  private readonly t0 = performance.now();
  readonly done: Promise<void>;

  constructor(
    readonly send: (i: number) => Promise<Response>,
    readonly o: { concurrency: number; maxRequests: number; maxMs: number; timeoutMs?: number },
  ) {
    let n = 0;
    const loop = async () => {
      while (!this.stopped && n < o.maxRequests && performance.now() - this.t0 < o.maxMs) {
        const i = n++;
        const start = performance.now();
        try {
          const res = await send(i);
          await res.arrayBuffer();
          this.outcomes.push({ i, status: res.status, ms: performance.now() - start, at: start - this.t0 });
        } catch (e) {
          this.outcomes.push({ i, status: 0, ms: performance.now() - start, at: start - this.t0, error: (e as Error).name === "TimeoutError" ? "timeout" : ((e as Error).message ?? String(e)).slice(0, 80) });
          await Bun.sleep(5); // a refused connection fails at once: do not spin
        }
      }
    };
    this.done = Promise.all(Array.from({ length: o.concurrency }, loop)).then(() => undefined);
  }

  /** Ms since the run began. */
  now(): number {
    return performance.now() - this.t0;
  }

  async stop(): Promise<LoadReport> {
    this.stopped = true;
    await this.done;
    return report(this.outcomes, this.now() / 1000);
  }

  /** Outcomes that started in [from, to) ms. */
  between(from: number, to: number): Outcome[] {
    return this.outcomes.filter((x) => x.at >= from && x.at < to);
  }
}

/** Percentile of sorted numbers. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}

/** Summarises outcomes. */
export function report(outcomes: Outcome[], seconds: number): LoadReport {
  const byStatus: Record<string, number> = {};
  const errors: Record<string, number> = {};
  for (const o of outcomes) {
    byStatus[o.status] = (byStatus[o.status] ?? 0) + 1;
    if (o.error) errors[o.error] = (errors[o.error] ?? 0) + 1;
  }
  const lat = outcomes.filter((o) => o.status >= 200 && o.status < 300).map((o) => o.ms).sort((a, b) => a - b);
  const r = (x: number) => Math.round(x * 10) / 10;
  return { requests: outcomes.length, seconds: r(seconds), byStatus, errors, p50: r(percentile(lat, 50)), p99: r(percentile(lat, 99)), max: r(lat.at(-1) ?? 0) };
}

/** Figures the suites measured, written to the console for the README (Reliability). */
export function figure(name: string, value: unknown): void {
  console.log(`[figure] ${name}: ${typeof value === "string" ? value : JSON.stringify(value)}`);
}

/** JSON POST with a key. */
export function post(base: string, path: string, body: unknown, key: string, timeoutMs = 10_000): Promise<Response> {
  return fetch(`${base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": key },
    body: typeof body === "string" ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
}

/** An app built in this process on given settings (for checks that need two apps on one store). */
export interface InProcessApp {
  deps: import("../../src/serving/deps.ts").Deps;
  app: ReturnType<typeof import("../../src/app.ts").createApp>;
  /** The server state the app was built with (set `draining` to simulate SIGTERM). */
  state: { draining: boolean };
  /** Calls the app with a key. */
  call(method: string, path: string, body: unknown, key?: string): Promise<Response>;
  close(): Promise<void>;
}

/** Builds deps and the app on `env` (PostgreSQL migrated first), with app options. */
export async function openApp(env: Record<string, string>, opts: import("../../src/app.ts").AppOptions = {}): Promise<InProcessApp> {
  const { createApp } = await import("../../src/app.ts");
  const { closeDeps } = await import("../../src/cmd/common.ts");
  const { openTestDeps } = await import("../support/backends.ts");
  const deps = await openTestDeps(env);
  const state = { draining: false };
  const app = createApp(deps, state, "test", opts);
  return {
    deps,
    app,
    state,
    call: async (method, path, body, key) => {
      const headers: Record<string, string> = { "content-type": "application/json" };
      if (key) headers["x-api-key"] = key;
      return app.request(path, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    },
    close: async () => {
      await opts.rateLimiter?.close();
      await closeDeps(deps);
    },
  };
}

/** Creates a key directly in an app's database and reloads its key ring. */
export async function addKey(a: InProcessApp, tenant: string, scopes: ("read" | "write" | "admin")[] = ["admin"], expiresAt: number | null = null): Promise<{ key: string; id: string }> {
  const { generateKey } = await import("../../src/serving/keys.ts");
  const { key, row } = generateKey(tenant, scopes, Date.now(), expiresAt);
  await a.deps.stores.registry.createKey(row);
  await a.deps.keys.reload();
  return { key, id: row.id };
}

/**
 * An open-loop load generator: starts `rate` requests per second for `seconds`, whether or not
 * earlier ones have answered (so a server that queues cannot hide it), never more than
 * `maxOutstanding` at once (beyond that a request is counted as not sent, status -1).
 */
export async function openLoop(send: (i: number) => Promise<Response>, o: { rate: number; seconds: number; maxOutstanding?: number }): Promise<{ outcomes: Outcome[]; report: LoadReport }> {
  const outcomes: Outcome[] = [];
  const t0 = performance.now();
  const total = Math.round(o.rate * o.seconds);
  const cap = o.maxOutstanding ?? 4000;
  let outstanding = 0;
  const pending: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const due = (i / o.rate) * 1000;
    const wait = due - (performance.now() - t0);
    if (wait > 1) await Bun.sleep(wait);
    const start = performance.now();
    if (outstanding >= cap) {
      outcomes.push({ status: -1, ms: 0, at: start - t0 });
      continue;
    }
    outstanding++;
    pending.push(
      send(i).then(
        async (res) => {
          await res.arrayBuffer();
          outcomes.push({ status: res.status, ms: performance.now() - start, at: start - t0 });
        },
        (e: Error) => {
          outcomes.push({ status: 0, ms: performance.now() - start, at: start - t0, error: (e.name === "TimeoutError" ? "timeout" : (e.message ?? String(e))).slice(0, 80) });
        },
      ).finally(() => {
        outstanding--;
      }),
    );
  }
  await Promise.all(pending);
  return { outcomes, report: report(outcomes, (performance.now() - t0) / 1000) };
}
