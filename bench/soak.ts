/**
 * Soak test (a benchmark, not CI): the compiled binary under a steady, mixed load at half its
 * measured capacity for SOAK_MINUTES (default 10); reports RSS growth (start after warm-up,
 * end, peak, slope), errors, latency per minute and event-loop lag.
 *
 *   bun bench/soak.ts                       # embedded stack, 10 minutes
 *   SOAK_STACK=postgres+redis bun bench/soak.ts
 *   SOAK_MINUTES=2 SOAK_RATE=500 bun bench/soak.ts
 *
 * Settings: SOAK_STACK (embedded | postgres+redis), SOAK_MINUTES, SOAK_RATE (req/s; default:
 * half the capacity measured by a 10 s closed loop), SOAK_USERS (default 5000), FS_BINARY.
 * Everything binds 127.0.0.1. Writes bench/results/soak-<stack>.json and .md.
 *
 * The load: 80% online 1 entity x 3 features, 10% online 20 entities x 3 features, 10% writes
 * of 10 records, from an open-loop generator in its own process (a slow server cannot hide its
 * queueing from the percentiles).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { startPostgres, startRedis, stopAll } from "../test/harness/services.ts";
import { BIN, cli, createKey, LoadLoop, percentile, post, requireBinary, Server } from "../test/reliability/support.ts";

const ROOT = resolve(import.meta.dir, "..");
const O = "/api/v1/features/online";
const W = "/api/v1/features/write";

interface Target {
  path: string;
  body: unknown;
}

/** The mixed workload, request i. */
function target(i: number, users: number): Target {
  const r = (i * 2654435761) % 100; // a fixed, well-spread mix
  const u = ((i * 40503) % users) + 1;
  if (r < 80) return { path: O, body: { entity_id: `user_${u}`, feature_names: ["user_age", "user_country", "user_lifetime_value"] } };
  if (r < 90) return { path: O, body: { entity_ids: Array.from({ length: 20 }, (_, k) => `user_${((u + k * 97) % users) + 1}`), feature_names: ["user_age", "user_country", "user_lifetime_value"] } };
  const t = new Date(Date.now() - 60_000).toISOString();
  return { path: W, body: { entity_type: "user", records: Array.from({ length: 10 }, (_, k) => ({ entity_id: `user_${((u + k) % users) + 1}`, event_time: t, features: { user_orders_30d: (i + k) % 50 } })) } };
}

// ───────────────────────────── generator (child process) ─────────────────────────────

interface MinuteStats {
  minute: number;
  requests: number;
  ok: number;
  errors: Record<string, number>;
  p50: number;
  p99: number;
  max: number;
}

async function generator(o: { base: string; key: string; rate: number; seconds: number; users: number; windowSeconds?: number }): Promise<void> {
  const windowMs = (o.windowSeconds ?? 60) * 1000;
  const t0 = performance.now();
  const total = Math.round(o.rate * o.seconds);
  let outstanding = 0;
  let minute = 0;
  let lat: number[] = [];
  let cur: MinuteStats = { minute: 0, requests: 0, ok: 0, errors: {}, p50: 0, p99: 0, max: 0 };
  const flush = () => {
    lat.sort((a, b) => a - b);
    cur.p50 = Math.round(percentile(lat, 50) * 10) / 10;
    cur.p99 = Math.round(percentile(lat, 99) * 10) / 10;
    cur.max = Math.round((lat.at(-1) ?? 0) * 10) / 10;
    console.log(JSON.stringify(cur));
    lat = [];
    cur = { minute: ++minute, requests: 0, ok: 0, errors: {}, p50: 0, p99: 0, max: 0 };
  };
  const count = (key: string) => {
    cur.errors[key] = (cur.errors[key] ?? 0) + 1;
  };
  const pending = new Set<Promise<void>>();
  for (let i = 0; i < total; i++) {
    const due = (i / o.rate) * 1000;
    const wait = due - (performance.now() - t0);
    if (wait > 1) await Bun.sleep(wait);
    while (performance.now() - t0 >= (minute + 1) * windowMs) flush();
    cur.requests++;
    if (outstanding >= 4000) {
      count("not sent (4000 outstanding)");
      continue;
    }
    const t = target(i, o.users);
    const start = performance.now();
    outstanding++;
    const p = post(o.base, t.path, t.body, o.key, 30_000)
      .then(
        async (res) => {
          await res.arrayBuffer();
          if (res.status >= 200 && res.status < 300) {
            cur.ok++;
            lat.push(performance.now() - start);
          } else count(String(res.status));
        },
        (e: Error) => count(e.name === "TimeoutError" ? "timeout" : (e.message ?? String(e)).slice(0, 60)),
      )
      .finally(() => {
        outstanding--;
        pending.delete(p);
      });
    pending.add(p);
  }
  await Promise.all(pending);
  flush();
}

// ───────────────────────────── the run ─────────────────────────────

/** Runs the generator in its own process; calls `onWindow` per stats window. */
async function runGenerator(o: { base: string; key: string; rate: number; seconds: number; users: number; windowSeconds?: number }, onWindow: (m: MinuteStats) => void): Promise<void> {
  const gen = Bun.spawn([process.execPath, import.meta.path, "--generator", JSON.stringify(o)], {
    env: { ...process.env, BUN_CONFIG_MAX_HTTP_REQUESTS: "8192" },
    stdout: "pipe",
    stderr: "inherit",
  });
  const dec = new TextDecoder();
  let buf = "";
  for await (const chunk of gen.stdout) {
    buf += dec.decode(chunk, { stream: true });
    let nl = buf.indexOf("\n");
    while (nl >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.trim() !== "") onWindow(JSON.parse(line) as MinuteStats);
      nl = buf.indexOf("\n");
    }
  }
  if ((await gen.exited) !== 0) throw new Error("the load generator failed");
}

/**
 * Capacity under the soak's own open-loop load: the highest rate of a ramp whose 8 s step
 * answers at least 99.5% with 2xx and keeps p99 under 250 ms.
 */
async function rampCapacity(base: string, key: string, users: number, guess: number): Promise<number> {
  let best = 0;
  for (const f of [0.2, 0.35, 0.5, 0.65, 0.8, 1.0, 1.25]) {
    const rate = Math.max(10, Math.round(guess * f));
    let step: MinuteStats | undefined;
    await runGenerator({ base, key, rate, seconds: 8, users, windowSeconds: 8 }, (m) => {
      step ??= m;
    });
    const ok = step !== undefined && step.requests > 0 && step.ok / step.requests >= 0.995 && step.p99 < 250;
    console.error(`  ramp ${rate} req/s: ${step?.ok}/${step?.requests} ok, p99 ${step?.p99} ms ${ok ? "" : "(over)"}`);
    if (!ok) break;
    best = rate;
    await Bun.sleep(1000);
  }
  return best;
}

function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Math.round((Number(m[1]) / 1024) * 10) / 10 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** Least-squares slope of y over x. */
function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  if (n < 2) return 0;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += ((xs[i] as number) - mx) * ((ys[i] as number) - my);
    den += ((xs[i] as number) - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

async function main(): Promise<void> {
  requireBinary();
  const stack = process.env.SOAK_STACK ?? "embedded";
  if (stack !== "embedded" && stack !== "postgres+redis") throw new Error(`SOAK_STACK: embedded or postgres+redis, got ${stack}`);
  const minutes = Number(process.env.SOAK_MINUTES ?? 10);
  const users = Number(process.env.SOAK_USERS ?? 5000);
  const dir = mkdtempSync(join(tmpdir(), "fs-soak-"));
  let env: Record<string, string> = { DATA_DIR: dir, LOG_LEVEL: "warn" };
  if (stack === "postgres+redis") {
    const [pg, redis] = await Promise.all([startPostgres(), startRedis()]);
    env = { ...env, POSTGRES_URL: await pg.createDatabase(), REDIS_URL: redis.url };
    if (cli(["migrate"], env).code !== 0) throw new Error("migrate failed");
  }
  const key = createKey(env, "soak", "admin").key;
  if (cli(["register", "examples/features.yaml", "--tenant", "soak"], env).code !== 0) throw new Error("register failed");
  console.error(`seeding ${users} users...`);
  if (cli(["seed", "--users", String(users), "--days", "2", "--tenant", "soak"], env).code !== 0) throw new Error("seed failed");
  const server = await Server.start(env);
  try {
    let rate = Number(process.env.SOAK_RATE ?? 0);
    let capacity = 0;
    if (!(rate > 0)) {
      const loop = new LoadLoop((i) => {
        const t = target(i, users);
        return post(server.base, t.path, t.body, key);
      }, { concurrency: 16, maxRequests: 10_000_000, maxMs: 5_000 });
      await loop.done;
      const r = await loop.stop();
      const closed = Math.round((r.byStatus["200"] ?? 0) / r.seconds);
      console.error(`closed loop (16 in flight): ~${closed} req/s; ramping the open-loop load:`);
      capacity = await rampCapacity(server.base, key, users, closed);
      if (capacity === 0) throw new Error("the server did not sustain even the lowest ramp step");
      rate = Math.max(10, Math.round(capacity / 2));
      console.error(`capacity ~${capacity} req/s (open loop, <0.5% errors, p99 < 250 ms); soaking at ${rate} req/s for ${minutes} min`);
    }
    await Bun.sleep(10_000); // let the backlog of the last (overloaded) ramp step drain
    const pid = server.proc.pid;
    const samples: { s: number; rss: number }[] = [];
    const t0 = performance.now();
    const sampler = setInterval(() => samples.push({ s: (performance.now() - t0) / 1000, rss: rssMiB(pid) }), 5_000);
    samples.push({ s: 0, rss: rssMiB(pid) });
    const perMinute: MinuteStats[] = [];
    await runGenerator({ base: server.base, key, rate, seconds: minutes * 60, users }, (m) => {
      perMinute.push(m);
      console.error(`minute ${m.minute + 1}: ${m.requests} requests, ${m.ok} ok, errors ${JSON.stringify(m.errors)}, p50 ${m.p50} ms, p99 ${m.p99} ms, RSS ${samples.at(-1)?.rss} MiB`);
    });
    clearInterval(sampler);
    samples.push({ s: (performance.now() - t0) / 1000, rss: rssMiB(pid) });
    const metrics = await (await fetch(`${server.base}/metrics`)).text();

    // RSS after the first minute (warm: caches filled, JIT done) vs the end
    const warm = samples.filter((x) => x.s >= Math.min(60, (minutes * 60) / 4));
    const rssStart = warm[0]?.rss ?? Number.NaN;
    const rssEnd = samples.at(-1)?.rss ?? Number.NaN;
    const errors: Record<string, number> = {};
    for (const m of perMinute) for (const [k, v] of Object.entries(m.errors)) errors[k] = (errors[k] ?? 0) + v;
    const result = {
      date: new Date().toISOString(),
      stack,
      binary: BIN,
      minutes,
      capacity_rps: capacity || null,
      rate_rps: rate,
      requests: perMinute.reduce((a, m) => a + m.requests, 0),
      ok: perMinute.reduce((a, m) => a + m.ok, 0),
      errors,
      error_count: Object.values(errors).reduce((a, b) => a + b, 0),
      rss_mib: {
        at_start: samples[0]?.rss,
        after_warmup: rssStart,
        end: rssEnd,
        peak: Math.max(...samples.map((x) => x.rss)),
        growth_after_warmup: Math.round((rssEnd - rssStart) * 10) / 10,
        slope_mib_per_min_after_warmup: Math.round(slope(warm.map((x) => x.s / 60), warm.map((x) => x.rss)) * 100) / 100,
      },
      shed: metrics.split("\n").filter((l) => l.startsWith("feature_store_http_requests_shed_total")),
      per_minute: perMinute,
      load_average: readFileSync("/proc/loadavg", "utf8").trim(),
    };
    const out = join(ROOT, "bench", "results");
    mkdirSync(out, { recursive: true });
    const name = `soak-${stack.replace("+", "-")}`;
    writeFileSync(join(out, `${name}.json`), `${JSON.stringify(result, null, 2)}\n`);
    const md = [
      `# Soak: ${stack}, ${minutes} min at ${rate} req/s${capacity ? ` (half of ~${capacity} req/s measured)` : ""}`,
      "",
      `Generated by \`bun bench/soak.ts\` on ${result.date}; load average at the end ${result.load_average}.`,
      "",
      `- requests: ${result.requests}, 2xx: ${result.ok}, errors: ${result.error_count} ${JSON.stringify(errors)}`,
      `- RSS (MiB): start ${result.rss_mib.at_start}, after warm-up ${rssStart}, end ${rssEnd}, peak ${result.rss_mib.peak}; growth after warm-up ${result.rss_mib.growth_after_warmup} MiB (${result.rss_mib.slope_mib_per_min_after_warmup} MiB/min)`,
      "",
      "| minute | requests sent | 2xx (counted when answered) | errors | p50 ms | p99 ms | max ms |",
      "| ---: | ---: | ---: | --- | ---: | ---: | ---: |",
      ...perMinute.map((m) => `| ${m.minute + 1} | ${m.requests} | ${m.ok} | ${JSON.stringify(m.errors)} | ${m.p50} | ${m.p99} | ${m.max} |`),
      "",
    ].join("\n");
    writeFileSync(join(out, `${name}.md`), md);
    console.log(md);
  } finally {
    await server.stop("SIGTERM");
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === "--generator") {
  await generator(JSON.parse(process.argv[3] ?? "{}"));
} else {
  await main();
}
