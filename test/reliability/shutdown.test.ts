/**
 * Graceful shutdown under load, on the compiled binary: SIGTERM while 16 keep-alive clients
 * read and write as fast as they can. No request the server accepted is lost: everything it
 * processed (its access log, the database) was answered 2xx, every 2xx write is stored, and
 * every client-side failure is a request the server never read (refused or reset before it
 * was read). Behind a load balancer (clients leave when /readyz turns 503, SHUTDOWN_DELAY
 * covers that) nothing fails at all.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cli, createKey, figure, LoadLoop, openApp, requireBinary, Server, type Outcome } from "./support.ts";

requireBinary();

describe("draining", () => {
  test("from SIGTERM on, every response closes its connection (keep-alive clients reconnect)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fs-drain-"));
    const a = await openApp({ DATA_DIR: dir });
    try {
      expect((await a.app.request("/healthz")).headers.get("connection")).toBeNull();
      a.state.draining = true;
      for (const path of ["/healthz", "/readyz", "/api/v1/features", "/nowhere"]) {
        expect([path, (await a.app.request(path)).headers.get("connection")]).toEqual([path, "close"]);
      }
    } finally {
      await a.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("SIGTERM under load", () => {
  let dir: string;
  let env: Record<string, string>;
  let key: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "fs-shutdown-"));
    env = { DATA_DIR: dir, LOG_LEVEL: "info" };
    key = createKey(env, "t", "admin").key;
    expect(cli(["register", "examples/features.yaml", "--tenant", "t"], env).code).toBe(0);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** Request i: even ones read, odd ones write a value of their own (entity `w<run>_<i>`). */
  function sender(base: () => string | undefined, run: string) {
    return (i: number): Promise<Response> => {
      const b = base();
      if (b === undefined) return Promise.reject(new Error("not sent: the load balancer took the server out"));
      const write = i % 2 === 1;
      return fetch(`${b}/api/v1/features/${write ? "write" : "online"}`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-api-key": key, "x-request-id": `${run}-${i}` },
        body: JSON.stringify(
          write
            ? { entity_type: "user", records: [{ entity_id: `w${run}_${i}`, event_time: "2024-01-01T00:00:00Z", features: { user_age: i % 100 } }] }
            : { entity_id: `w${run}_${i - 1}`, feature_names: ["user_age"] },
        ),
        signal: AbortSignal.timeout(20_000),
      });
    };
  }

  /** Which writes of a run are stored (read back from a fresh server on the same data). */
  async function storedWrites(run: string, indexes: number[]): Promise<Set<number>> {
    const s = await Server.start(env);
    try {
      const stored = new Set<number>();
      for (let k = 0; k < indexes.length; k += 500) {
        const chunk = indexes.slice(k, k + 500);
        const res = await fetch(`${s.base}/api/v1/features/online`, {
          method: "POST",
          headers: { "content-type": "application/json", "x-api-key": key },
          body: JSON.stringify({ entity_ids: chunk.map((i) => `w${run}_${i}`), feature_names: ["user_age"] }),
        });
        expect(res.status).toBe(200);
        const body = (await res.json()) as { results: { metadata: { user_age: { status: string } } }[] };
        body.results.forEach((r, j) => {
          if (r.metadata.user_age.status === "present") stored.add(chunk[j] as number);
        });
      }
      return stored;
    } finally {
      await s.stop("SIGKILL");
    }
  }

  async function runOnce(run: string, extraEnv: Record<string, string>, behindLoadBalancer: boolean) {
    const server = await Server.start({ ...env, SHUTDOWN_TIMEOUT: "10", ...extraEnv });
    let routed: string | undefined = server.base;
    const loop = new LoadLoop(sender(() => routed, run), { concurrency: 16, maxRequests: 200_000, maxMs: 30_000 });
    await Bun.sleep(1500);
    const tTerm = loop.now();
    server.proc.kill("SIGTERM");
    if (behindLoadBalancer) {
      // the load balancer's health check: out of rotation once /readyz answers 503
      for (let i = 0; i < 200 && routed !== undefined; i++) {
        const r = await fetch(`${server.base}/readyz`).catch(() => undefined);
        if (r === undefined || r.status === 503) routed = undefined;
        else await Bun.sleep(100);
      }
    }
    const exitCode = await server.proc.exited;
    const exitMs = loop.now() - tTerm;
    await Bun.sleep(200); // the clients notice
    routed = undefined;
    const report = await loop.stop();
    await server.stop();

    const processed = new Map<number, number>();
    for (const m of server.output.matchAll(new RegExp(`"request_id":"${run}-(\\d+)"[^\\n]*?"status":(\\d+)`, "g"))) processed.set(Number(m[1]), Number(m[2]));
    const writes = loop.outcomes.filter((o) => (o.i as number) % 2 === 1);
    const stored = await storedWrites(run, writes.map((o) => o.i as number));
    const failed = loop.outcomes.filter((o) => o.status !== 200 && !(o.error ?? "").startsWith("not sent"));
    const classes = { refused: 0, reset_before_read: 0, other: [] as Outcome[] };
    for (const o of failed) {
      if (o.status === 0 && /ECONNREFUSED/.test(o.error ?? "")) classes.refused++;
      else if (o.status === 0 && /ECONNRESET|closed/.test(o.error ?? "")) classes.reset_before_read++;
      else classes.other.push(o);
    }
    figure(`SIGTERM under load (${run}): requests, failures by kind, exit after (ms)`, {
      requests: report.requests,
      ok: report.byStatus["200"] ?? 0,
      refused: classes.refused,
      reset_before_read: classes.reset_before_read,
      other: classes.other.length,
      exit_ms: Math.round(exitMs),
    });
    return { exitCode, loop, processed, stored, failed, classes, writes };
  }

  test("direct clients: nothing the server accepted is lost; failures are requests it never read", async () => {
    const r = await runOnce("direct", {}, false);
    expect(r.exitCode).toBe(0);
    expect(r.classes.other).toEqual([]);
    for (const o of r.failed) {
      // never processed: not in the access log, and (a write) not stored
      expect([o.i, o.error, r.processed.get(o.i as number)]).toEqual([o.i, o.error, undefined]);
      if ((o.i as number) % 2 === 1) expect([o.i, r.stored.has(o.i as number)]).toEqual([o.i, false]);
    }
    // everything the server processed was answered: every logged request got its 2xx
    const ok = new Set(r.loop.outcomes.filter((o) => o.status === 200).map((o) => o.i));
    for (const [i, status] of r.processed) expect([i, status, ok.has(i)]).toEqual([i, 200, true]);
    // every acknowledged write is stored
    for (const o of r.writes) if (o.status === 200) expect([o.i, r.stored.has(o.i as number)]).toEqual([o.i, true]);
  }, 120_000);

  test("behind a load balancer (SHUTDOWN_DELAY, out of rotation on /readyz 503): no request fails", async () => {
    const r = await runOnce("lb", { SHUTDOWN_DELAY: "1" }, true);
    expect(r.exitCode).toBe(0);
    expect(r.failed.map((o) => `${o.i}: ${o.status} ${o.error ?? ""}`)).toEqual([]);
    for (const o of r.writes) if (o.status === 200) expect([o.i, r.stored.has(o.i as number)]).toEqual([o.i, true]);
    expect(r.writes.filter((o) => o.status === 200).length).toBeGreaterThan(0);
  }, 120_000);
});
