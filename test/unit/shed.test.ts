/**
 * Admission control and the request deadline, deterministically: a handler that waits on a
 * gate stands for a slow store, so the in-flight limit, the queue (FIFO, bounded in length and
 * time), the deadline and the event-loop-lag check are exercised without timing assumptions.
 */
import { describe, expect, test } from "bun:test";
import { Hono } from "hono";
import { Registry } from "prom-client";
import { Admission, EventLoopLag, OnlineShed, shed } from "../../src/api/middleware/shed.ts";
import { errorHandler } from "../../src/api/errors.ts";
import type { AppEnv } from "../../src/api/env.ts";
import { createLogger } from "../../src/log.ts";

interface GateOptions {
  maxInFlight: number;
  maxQueue: number;
  queueTimeoutMs: number;
  requestTimeoutMs: number;
  maxLagMs: number;
  /** CPU time of the serving thread, us (default: this thread's real one) */
  cpuMicros?: () => number;
}

function gatedApp(opts: Partial<GateOptions> = {}) {
  const o: GateOptions = { maxInFlight: 2, maxQueue: 2, queueTimeoutMs: 10_000, requestTimeoutMs: 0, maxLagMs: 0, ...opts };
  const admission = new Admission({ maxInFlight: o.maxInFlight, maxQueue: o.maxQueue, queueTimeoutMs: o.queueTimeoutMs });
  const lag = new EventLoopLag(o.maxLagMs, o.cpuMicros);
  const registry = new Registry();
  const app = new Hono<AppEnv>();
  app.onError(errorHandler(createLogger("silent", 2)));
  app.use("*", async (c, next) => {
    c.set("requestId", "r");
    await next();
  });
  app.use("/api/*", shed(admission, registry, { requestTimeoutMs: o.requestTimeoutMs, lag }));
  const gates: (() => void)[] = [];
  let running = 0;
  let maxRunning = 0;
  const order: number[] = [];
  app.get("/api/slow/:n", async (c) => {
    running++;
    maxRunning = Math.max(maxRunning, running);
    order.push(Number(c.req.param("n")));
    await new Promise<void>((resolve) => gates.push(resolve));
    running--;
    return c.json({ ok: true });
  });
  app.get("/api/fail", (c) => c.json({ code: "unavailable" }, 503));
  const call = (path: string) => app.request(path);
  /** Opens the oldest gate (after the handler reached it). */
  const open = async () => {
    while (gates.length === 0) await Bun.sleep(1);
    gates.shift()?.();
  };
  return { app, admission, lag, registry, call, open, order, stats: () => ({ maxRunning }) };
}

async function problem(res: Response) {
  const body = (await res.json()) as { code: string; status: number; detail: string };
  return { status: res.status, code: body.code, retryAfter: res.headers.get("retry-after"), type: res.headers.get("content-type") };
}

describe("admission control", () => {
  test("at most maxInFlight run; the queue is FIFO; beyond the queue: 503 with Retry-After at once", async () => {
    const g = gatedApp();
    const pending = [1, 2, 3, 4].map((n) => g.call(`/api/slow/${n}`));
    await Bun.sleep(5);
    expect(g.admission.inFlight).toBe(2);
    expect(g.admission.queued).toBe(2);
    const refused = await g.call("/api/slow/5");
    expect(await problem(refused)).toEqual({ status: 503, code: "unavailable", retryAfter: "1", type: "application/problem+json" });
    for (let i = 0; i < 4; i++) await g.open();
    const statuses = await Promise.all(pending.map(async (p) => (await p).status));
    expect(statuses).toEqual([200, 200, 200, 200]);
    expect(g.order).toEqual([1, 2, 3, 4]);
    expect(g.stats().maxRunning).toBe(2);
    expect(g.admission.inFlight).toBe(0);
    expect(g.admission.queued).toBe(0);
    const metrics = await g.registry.metrics();
    expect(metrics).toContain('feature_store_http_requests_shed_total{reason="queue_full"} 1');
  });

  test("a request that waits longer than queueTimeoutMs gets 503; the slot it would have had goes on", async () => {
    const g = gatedApp({ maxInFlight: 1, maxQueue: 10, queueTimeoutMs: 30 });
    const first = g.call("/api/slow/1");
    await Bun.sleep(5);
    const waited = await g.call("/api/slow/2"); // times out in the queue
    expect(await problem(waited)).toMatchObject({ status: 503, code: "unavailable", retryAfter: "1" });
    const third = g.call("/api/slow/3");
    await g.open();
    expect((await first).status).toBe(200);
    await g.open();
    expect((await third).status).toBe(200);
    expect(g.order).toEqual([1, 3]);
    expect(await g.registry.metrics()).toContain('feature_store_http_requests_shed_total{reason="queue_timeout"} 1');
  });

  test("the deadline answers 503 and frees nothing early: the slot is held until the work ends", async () => {
    const g = gatedApp({ maxInFlight: 1, maxQueue: 0, requestTimeoutMs: 40 });
    const late = await g.call("/api/slow/1");
    expect(await problem(late)).toMatchObject({ status: 503, code: "unavailable", retryAfter: "1" });
    // the abandoned handler still holds its slot: a new request is refused, not run alongside
    expect(g.admission.inFlight).toBe(1);
    expect((await g.call("/api/slow/2")).status).toBe(503);
    await g.open();
    await Bun.sleep(5);
    expect(g.admission.inFlight).toBe(0);
    const ok = g.call("/api/slow/3");
    await g.open();
    expect((await ok).status).toBe(200);
    expect(await g.registry.metrics()).toContain('feature_store_http_requests_shed_total{reason="deadline"} 1');
  });

  test("every 503 leaving the API carries Retry-After", async () => {
    const g = gatedApp();
    const res = await g.call("/api/fail");
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("1");
  });

  test("after the event loop was blocked beyond maxLagMs, the backlog of requests is refused; then admitted again", async () => {
    // a thread that had the CPU all along (on a shared machine the real one may get less of it
    // while it spins: that case is the next test's)
    const g = gatedApp({ maxLagMs: 50, maxInFlight: 10, cpuMicros: () => performance.now() * 1000 });
    const first = g.call("/api/slow/1"); // starts the lag sampler
    await g.open();
    expect((await first).status).toBe(200);
    const busyUntil = performance.now() + 120;
    while (performance.now() < busyUntil) {
      // a CPU-bound stretch: nothing else runs
    }
    await Bun.sleep(1); // the (late) sample runs
    expect(g.lag.lagMs()).toBeGreaterThan(50);
    // the requests that piled up meanwhile: a few are served, the rest refused at once
    const backlog = Array.from({ length: 12 }, (_, i) => g.call(`/api/slow/${2 + i}`));
    const refused = await Promise.all(backlog.slice(8));
    for (const r of refused) expect(await problem(r)).toMatchObject({ status: 503, code: "unavailable", retryAfter: "1" });
    for (let i = 0; i < 8; i++) await g.open();
    expect((await Promise.all(backlog.slice(0, 8))).map((r) => r.status)).toEqual(Array(8).fill(200));
    expect(await g.registry.metrics()).toContain('feature_store_http_requests_shed_total{reason="overloaded"} 4');
    // once the sampler runs on time again, requests are admitted (retried: a busy machine may lag)
    let status = 0;
    for (let attempt = 0; attempt < 100 && status !== 200; attempt++) {
      await Bun.sleep(30);
      const pair = [g.call(`/api/slow/${10 + attempt}`)];
      const res = await Promise.race([pair[0] as Promise<Response>, Bun.sleep(5).then(() => undefined)]);
      if (res) status = res.status; // refused at once
      else {
        await g.open();
        status = ((await pair[0]) as Response).status;
      }
    }
    expect(status).toBe(200);
  });

  test("a loop late while this thread was off the CPU (other threads had it) refuses nothing: the backlog is answered", async () => {
    const g = gatedApp({ maxLagMs: 50, maxInFlight: 20 });
    const first = g.call("/api/slow/0"); // starts the lag sampler
    await g.open();
    expect((await first).status).toBe(200);
    // blocked without using the CPU, as when the machine's other threads (the bulk lane's,
    // other processes) run instead of this one
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 150);
    await Bun.sleep(1); // the (late) sample runs
    expect(g.lag.lagMs()).toBeGreaterThan(50);
    expect(g.lag.busyShare()).toBeLessThan(0.5);
    const backlog = Array.from({ length: 12 }, (_, i) => g.call(`/api/slow/${1 + i}`));
    for (let i = 0; i < 12; i++) await g.open();
    expect((await Promise.all(backlog)).map((r) => r.status)).toEqual(Array(12).fill(200));
    expect(await g.registry.metrics()).toContain('feature_store_http_requests_shed_total{reason="overloaded"} 0');
  });

  test("a few clients sending one slow request after another are never refused for lag", async () => {
    const g = gatedApp({ maxLagMs: 20, maxInFlight: 10 });
    for (let i = 0; i < 5; i++) {
      const busyUntil = performance.now() + 60;
      while (performance.now() < busyUntil) {
        // one slow request's CPU time
      }
      await Bun.sleep(1); // the loop gets round to its (late) sample, as between socket reads
      // four clients' requests, queued behind the slow stretch
      const rs = [0, 1, 2, 3].map((j) => g.call(`/api/slow/${i * 4 + j}`));
      for (let j = 0; j < 4; j++) await g.open();
      expect((await Promise.all(rs)).map((r) => r.status)).toEqual([200, 200, 200, 200]);
    }
  });

  test("lag not watched (maxLagMs 0): a backlog after a blocked loop is admitted, and nothing samples", async () => {
    const g = gatedApp({ maxLagMs: 0, maxInFlight: 20 });
    const busyUntil = performance.now() + 60;
    while (performance.now() < busyUntil) {
      // a CPU-bound stretch
    }
    const backlog = Array.from({ length: 12 }, (_, i) => g.call(`/api/slow/${i}`));
    for (let i = 0; i < 12; i++) await g.open();
    expect((await Promise.all(backlog)).map((r) => r.status)).toEqual(Array(12).fill(200));
    expect(g.lag.lagMs()).toBe(0);
    expect(await g.registry.metrics()).toContain('feature_store_http_requests_shed_total{reason="overloaded"} 0');
  });

  test("limits of 0 mean unlimited", async () => {
    const g = gatedApp({ maxInFlight: 0, maxQueue: 0 });
    const pending = Array.from({ length: 50 }, (_, i) => g.call(`/api/slow/${i}`));
    for (let i = 0; i < 50; i++) await g.open();
    expect(new Set(await Promise.all(pending.map(async (p) => (await p).status)))).toEqual(new Set([200]));
    expect(g.stats().maxRunning).toBe(50);
  });
});

describe("request deadlines (one timer for all)", () => {
  test("each request not met in time is called late once, in order; met ones never; through bursts and an emptied queue", async () => {
    const online = new OnlineShed(new Admission({ maxInFlight: 0, maxQueue: 0, queueTimeoutMs: 0 }), new Registry(), { requestTimeoutMs: 30 });
    for (const burst of [3, 1500, 1]) {
      const late: number[] = [];
      const start = performance.now();
      const pending = Array.from({ length: burst }, (_, i) => online.deadline(start, () => late.push(i)));
      // met: every third, and the first (the oldest), out of order
      const met = new Set<number>([0]);
      for (let i = burst - 1; i >= 0; i -= 3) met.add(i);
      for (const i of met) online.met(pending[i] as NonNullable<(typeof pending)[number]>);
      await Bun.sleep(80);
      expect(late).toEqual(Array.from({ length: burst }, (_, i) => i).filter((i) => !met.has(i)));
      // all answered: a later request has its own deadline again
      const again: number[] = [];
      online.deadline(performance.now(), () => again.push(1));
      await Bun.sleep(80);
      expect(again).toEqual([1]);
    }
  });
});
