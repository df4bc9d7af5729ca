/**
 * End to end: what the compiled binary tells a user who gets something wrong (issue 10 item 7,
 * issue 12 item 3), and which database each command uses (issue 10 item 9). Every error here is
 * one line naming what to fix, exit 2.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { freePort } from "../harness/services.ts";

const BIN = resolve(process.env.FS_BINARY ?? "dist/feature-store");

if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run \`bun run build\` first (npm test does)`);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

let dir: string;

/** Runs the binary to completion (killed after 20 s, so a command that should fail but serves shows as a failure). */
function cli(args: string[], env: Record<string, string> = {}, cwd = dir): Run {
  const p = Bun.spawnSync([BIN, ...args], { env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", LOG_LEVEL: "warn", ...env }, stdout: "pipe", stderr: "pipe", cwd, timeout: 20_000 });
  return { code: p.exitCode ?? -1, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

/** A failure reported as exactly one line on stderr, nothing on stdout. */
function oneLine(r: Run, code = 2): string {
  expect({ code: r.code, stdout: r.stdout }).toEqual({ code, stdout: "" });
  const lines = r.stderr.trimEnd().split("\n");
  expect(lines).toHaveLength(1);
  return lines[0] as string;
}

async function waitFor(url: string, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    try {
      if ((await fetch(url)).status === 200) return;
    } catch {
      // not up yet
    }
    await Bun.sleep(50);
  }
  throw new Error(`${url} did not answer 200 within ${timeoutMs} ms`);
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "fs-cli-errors-"));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("usage errors", () => {
  test("an unknown flag: one clear line, then the command's help, exit 2", () => {
    for (const [args, usage] of [
      [["serve", "--nope"], "Usage: feature-store serve"],
      [["keys", "list", "--bogus"], "feature-store keys list"],
      [["register", "x.yaml", "--tenant", "t", "--force"], "Usage: feature-store register"],
    ] as const) {
      const r = cli([...args], { DATA_DIR: join(dir, "unused") });
      expect(r.code).toBe(2);
      const [first, blank] = r.stderr.split("\n");
      expect(first).toBe(`feature-store ${args[0]}: unknown option ${args.at(-1)} (options: ${args[0] === "serve" ? "--port, --host, --workers" : args[0] === "keys" ? "--tenant" : "--tenant, --dry-run"}, --help)`);
      expect(blank).toBe("");
      expect(r.stderr).toContain(usage);
      expect(r.stderr).not.toContain("positional argument");
    }
    const missing = cli(["keys", "create", "--tenant"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr.split("\n")[0]).toBe("feature-store keys: --tenant needs a value");
  });

  test("help COMMAND prints that command's help", () => {
    for (const c of ["keys", "serve", "register"]) {
      const help = cli(["help", c]);
      expect(help.code).toBe(0);
      expect(help.stdout).toBe(cli([c, "--help"]).stdout);
      expect(help.stdout).toContain(`feature-store ${c}`);
    }
    const unknown = cli(["help", "frobnicate"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
  });

  test("version takes no arguments", () => {
    const r = cli(["version", "extra"]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr.split("\n")[0]).toBe('feature-store version: unexpected argument "extra"');
    expect(cli(["version"]).code).toBe(0);
  });
});

describe("bad settings: one line naming the setting, exit 2", () => {
  test("numbers say what is expected, and a flag's value blames the flag", () => {
    const env = { DATA_DIR: join(dir, "unused") };
    expect(oneLine(cli(["serve"], { ...env, PORT: "abc" }))).toBe('feature-store serve: configuration error: PORT: expected an integer from 0 to 65535, got "abc"');
    expect(oneLine(cli(["serve", "--port", "99999"], env))).toBe('feature-store serve: configuration error: --port: expected an integer from 0 to 65535, got "99999"');
    expect(oneLine(cli(["keys", "list"], { ...env, STORE_TIMEOUT_MS: "2s" }))).toBe('feature-store keys: configuration error: STORE_TIMEOUT_MS: expected an integer >= 1, got "2s"');
  });

  test("a host that is no address, or does not resolve", () => {
    const env = { DATA_DIR: join(dir, "unused") };
    expect(oneLine(cli(["serve", "--host", "999.1.1.1", "--port", "0"], env))).toStartWith("feature-store serve: configuration error: --host: expected an IP address");
    expect(oneLine(cli(["serve", "--port", "0"], { ...env, HOST: "999.1.1.1" }))).toStartWith("feature-store serve: configuration error: HOST: expected an IP address");
    expect(oneLine(cli(["serve", "--host", "no-such-host.invalid", "--port", "0"], env))).toStartWith('feature-store serve: configuration error: --host: cannot resolve "no-such-host.invalid"');
    expect(existsSync(env.DATA_DIR)).toBe(false);
    // 192.0.2.1 is TEST-NET-1 (RFC 5737): never an address of this machine
    expect(oneLine(cli(["serve", "--host", "192.0.2.1", "--port", "0"], env))).toBe("feature-store serve: --host: 192.0.2.1 is not an address of this machine (EADDRNOTAVAIL)");
  });

  test("a DATA_DIR that cannot be created names DATA_DIR", () => {
    const file = join(dir, "a-file");
    writeFileSync(file, "not a directory");
    for (const args of [["serve", "--port", "0"], ["keys", "list"], ["migrate"], ["keys", "create", "--tenant", "t", "--scopes", "read"]]) {
      const line = oneLine(cli(args, { DATA_DIR: join(file, "data") }));
      expect(line).toBe(`feature-store ${args[0]}: configuration error: DATA_DIR: cannot keep the embedded database in ${join(file, "data")}: a part of the path is a file, not a directory`);
    }
  });

  test("a second, unrelated serve on a port in use fails with address in use", async () => {
    const port = await freePort();
    const first = Bun.spawn([BIN, "serve", "--port", String(port), "--host", "127.0.0.1"], {
      env: { PATH: process.env.PATH ?? "", DATA_DIR: join(dir, "first"), LOG_LEVEL: "warn" },
      stdout: "ignore",
      stderr: "ignore",
    });
    try {
      await waitFor(`http://127.0.0.1:${port}/healthz`);
      const flag = cli(["serve", "--port", String(port), "--host", "127.0.0.1"], { DATA_DIR: join(dir, "second") });
      expect(oneLine(flag)).toBe(`feature-store serve: address in use: 127.0.0.1:${port} is taken by another process; stop it or choose another --port`);
      const env = cli(["serve"], { DATA_DIR: join(dir, "second"), PORT: String(port), HOST: "127.0.0.1" });
      expect(oneLine(env)).toBe(`feature-store serve: address in use: 127.0.0.1:${port} is taken by another process; stop it or choose another PORT`);
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    } finally {
      first.kill("SIGKILL");
      await first.exited;
    }
  });
});

describe("register reads YAML", () => {
  test("a file that does not parse: line and column, exit 2", () => {
    writeFileSync(join(dir, "bad.yaml"), "features:\n  - name: a\n   version: 1\n");
    const line = oneLine(cli(["register", "bad.yaml", "--tenant", "t"], { DATA_DIR: join(dir, "yaml") }));
    expect(line).toBe("feature-store register: bad.yaml:3:1: YAML syntax error: Sequence item without - indicator (MISSING_CHAR)");
    writeFileSync(join(dir, "tab.yaml"), "features:\n\t- name: a\n");
    expect(oneLine(cli(["register", "tab.yaml", "--tenant", "t"], { DATA_DIR: join(dir, "yaml") }))).toMatch(/^feature-store register: tab\.yaml:2:1: YAML syntax error: .+ \([A-Z_]+\)$/);
    expect(oneLine(cli(["register", "missing.yaml", "--tenant", "t"], { DATA_DIR: join(dir, "yaml") }))).toBe("feature-store register: cannot read missing.yaml: no such file");
  });
});

describe("which database", () => {
  test("CLI commands print the database on stderr, and warn when they created a new one", () => {
    const cwd = mkdtempSync(join(dir, "cwd-"));
    const db = join(cwd, "rel", "feature-store.db");
    const env = { DATA_DIR: "rel" };
    const created = cli(["keys", "create", "--tenant", "acme", "--scopes", "admin"], env, cwd);
    expect(created.code).toBe(0);
    expect(created.stdout.trimEnd().split("\n").at(-1)).toMatch(/^fs_[A-Za-z0-9_-]{43}$/);
    expect(created.stdout).not.toContain("database");
    const [where, warning, ...rest] = created.stderr.trimEnd().split("\n");
    expect(where).toBe(`database: ${db}`);
    expect(warning).toBe(`warning: created a new, empty database at ${db} (DATA_DIR=rel, working directory ${cwd}); set DATA_DIR to use an existing one`);
    expect(rest).toEqual([]);

    const list = cli(["keys", "list"], env, cwd);
    expect(list.code).toBe(0);
    expect(list.stderr).toBe(`database: ${db}\n`);
    expect(list.stdout).toContain("acme");

    writeFileSync(join(cwd, "f.yaml"), "features:\n  - {name: user_age, version: 1, dtype: int64, entity_type: user}\n");
    const reg = cli(["register", "f.yaml", "--tenant", "acme"], env, cwd);
    expect(reg.code).toBe(0);
    expect(reg.stderr).toBe(`database: ${db}\n`);
    expect(reg.stdout.trim()).toBe("new       user_age@1");

    // from another directory, the same relative DATA_DIR is another, new database: said loudly
    const elsewhere = cli(["keys", "list"], env, dir);
    expect(elsewhere.stderr).toContain(`database: ${join(dir, "rel", "feature-store.db")}\n`);
    expect(elsewhere.stderr).toContain(`warning: created a new, empty database at ${join(dir, "rel", "feature-store.db")}`);

    // seed keeps its stderr for progress, but a new database is still said
    const seedCwd = mkdtempSync(join(dir, "seed-"));
    const seeded = cli(["seed", "--users", "2", "--days", "1"], env, seedCwd);
    expect(seeded.code).toBe(0);
    expect(seeded.stderr.split("\n")[0]).toBe(`warning: created a new, empty database at ${join(seedCwd, "rel", "feature-store.db")} (DATA_DIR=rel, working directory ${seedCwd}); set DATA_DIR to use an existing one`);
    expect(cli(["seed", "--users", "2", "--days", "1"], env, seedCwd).stderr).not.toContain("warning");
  });

  test("serve names the database in its start line and does not warn", async () => {
    const cwd = mkdtempSync(join(dir, "serve-"));
    const port = await freePort();
    const server = Bun.spawn([BIN, "serve", "--port", String(port), "--host", "127.0.0.1"], {
      env: { PATH: process.env.PATH ?? "", DATA_DIR: "data", LOG_LEVEL: "info" },
      cwd,
      stdout: "pipe",
      stderr: "pipe",
    });
    try {
      await waitFor(`http://127.0.0.1:${port}/healthz`);
    } finally {
      server.kill("SIGTERM");
      await server.exited;
    }
    const out = await new Response(server.stdout).text();
    const start = out
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { msg: string; database?: string; database_location?: string })
      .find((l) => l.msg === "feature-store serving");
    expect(start).toMatchObject({ database: "sqlite", database_location: join(cwd, "data", "feature-store.db") });
    expect(await new Response(server.stderr).text()).not.toContain("warning: created");
  });
});
