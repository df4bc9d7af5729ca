/**
 * The README's commands work right after `npm install`, where `bun` is not on PATH (it is
 * node_modules/.bin/bun): `npm run services -- redis` starts a throw-away Redis and prints its URL.
 */
import { expect, test } from "bun:test";
import { connect } from "node:net";
import { resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "../..");

/** PATH as a user has it after `npm install`: no node_modules/.bin. */
const USER_PATH = (process.env.PATH ?? "")
  .split(":")
  .filter((d) => d !== "" && !d.includes("node_modules"))
  .join(":");

async function ping(url: string): Promise<string> {
  const u = new URL(url);
  return new Promise((res, rej) => {
    const s = connect({ host: u.hostname, port: Number(u.port) }, () => s.write("PING\r\n"));
    s.once("data", (d) => {
      res(d.toString().trim());
      s.end();
    });
    s.once("error", rej);
  });
}

test("npm run services -- redis: the README's way to start a local Redis, without bun on PATH", async () => {
  expect(Bun.spawnSync(["sh", "-c", "command -v bun"], { env: { PATH: USER_PATH } }).exitCode).not.toBe(0);
  let url: string | undefined;
  const p = Bun.spawn(["npm", "run", "--silent", "services", "--", "redis"], { cwd: ROOT, env: { ...process.env, PATH: USER_PATH }, stdout: "pipe", stderr: "pipe" });
  try {
    let out = "";
    const dec = new TextDecoder();
    for await (const chunk of p.stdout) {
      out += dec.decode(chunk, { stream: true });
      if (out.includes("\n")) break;
    }
    url = /^REDIS_URL=(redis:\/\/\S+)$/m.exec(out)?.[1];
    if (!url) throw new Error(`no REDIS_URL line; stdout: ${out}; stderr: ${await new Response(p.stderr).text()}`);
    expect(await ping(url)).toBe("+PONG");
  } finally {
    p.kill("SIGTERM");
    await p.exited;
  }
  // SIGTERM to npm stops the harness, which stops its Redis
  const end = Date.now() + 10_000;
  while (Date.now() < end && (await ping(url).catch(() => "stopped")) !== "stopped") await Bun.sleep(100);
  expect(await ping(url).catch(() => "stopped")).toBe("stopped");
}, 120_000);
