/**
 * What `serve` loads on the embedded path (issue 12, cold start): the PostgreSQL, Redis and
 * Kafka client libraries are never loaded, not at start and not while answering; the server
 * answers `GET /healthz` without the HTTP app (from serve.ts, then serve-start.ts; the app, Hono,
 * zod, the routes and their schemas, is built right after the start, off the liveness probe's path). Runs
 * `bun src/cli.ts serve` with a preload that lists every module the process loaded.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { freePort } from "../harness/services.ts";

const ROOT = resolve(import.meta.dir, "../..");
const CLIENT_LIBRARIES = /[\\/]node_modules[\\/](kafkajs|postgres|redis|@redis[\\/][^\\/]+)[\\/]/;

function cli(env: Record<string, string>, args: string[]): string {
  const p = Bun.spawnSync([process.execPath, "src/cli.ts", ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${args.join(" ")}: ${p.stderr.toString()}`);
  return p.stdout.toString();
}

describe("serve on the embedded stores", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "fs-startup-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("never loads the PostgreSQL, Redis or Kafka clients, at start or while answering", async () => {
    const env: Record<string, string> = { DATA_DIR: dir, LOG_LEVEL: "warn", POSTGRES_URL: "", REDIS_URL: "", KAFKA_BROKERS: "" };
    const key = cli(env, ["keys", "create", "--tenant", "t", "--scopes", "admin"]).trim().split("\n").pop() as string;
    const port = await freePort();
    const out = join(dir, "loaded.txt");
    const server = Bun.spawn([process.execPath, "--preload", "./test/support/loaded-modules.ts", "src/cli.ts", "serve", "--port", String(port), "--host", "127.0.0.1"], {
      cwd: ROOT,
      env: { ...process.env, ...env, LOADED_MODULES_OUT: out },
      stdout: "ignore",
      stderr: "inherit",
    });
    try {
      const url = `http://127.0.0.1:${port}`;
      for (let i = 0; ; i++) {
        const ok = await fetch(`${url}/healthz`).then((r) => r.ok, () => false);
        if (ok) break;
        if (i > 300) throw new Error("serve did not start");
        await Bun.sleep(50);
      }
      expect((await fetch(`${url}/healthz`)).status).toBe(200);
      // /healthz may be answered before the start has loaded serve-start.ts (it runs in steps,
      // answering requests between them): the module list is asked for until it is there
      let early: string[] = [];
      for (let tries = 0; !early.some((p) => p.endsWith(join("src", "cmd", "serve-start.ts"))); tries++) {
        if (tries > 100) throw new Error(`serve-start.ts never loaded: ${early.join(" ")}`);
        rmSync(`${out}.now`, { force: true });
        server.kill("SIGUSR2");
        for (let i = 0; !existsSync(`${out}.now`); i++) {
          if (i > 200) throw new Error("no module list on SIGUSR2");
          await Bun.sleep(25);
        }
        early = readFileSync(`${out}.now`, "utf8").split("\n").filter(Boolean);
        expect(early.filter((p) => CLIENT_LIBRARIES.test(p))).toEqual([]);
      }
      const h = { "x-api-key": key, "content-type": "application/json" };
      expect((await fetch(`${url}/api/v1/features/register`, { method: "POST", headers: h, body: JSON.stringify({ name: "age", version: 1, dtype: "int32", entity_type: "user" }) })).status).toBe(201);
      expect((await fetch(`${url}/api/v1/features/write`, { method: "POST", headers: h, body: JSON.stringify({ entity_type: "user", records: [{ entity_id: "u1", features: { age: 3 } }] }) })).status).toBe(200);
      const online = await fetch(`${url}/api/v1/features/online`, { method: "POST", headers: h, body: JSON.stringify({ entity_id: "u1", feature_names: ["age"] }) });
      expect(((await online.json()) as { features: { age: number } }).features.age).toBe(3);
      expect((await fetch(`${url}/metrics`)).status).toBe(200);
    } finally {
      server.kill("SIGTERM");
      await server.exited;
    }
    const loaded = readFileSync(out, "utf8").split("\n").filter(Boolean);
    // the list is real: the server's own modules and its HTTP framework are in it
    expect(loaded.some((p) => p.endsWith(join("src", "cmd", "serve.ts")))).toBe(true);
    expect(loaded.some((p) => /[\\/]node_modules[\\/]hono[\\/]/.test(p))).toBe(true);
    expect(loaded.filter((p) => CLIENT_LIBRARIES.test(p))).toEqual([]);
  }, 60_000);
});
