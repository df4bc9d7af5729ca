/**
 * A server's logger (src/log.ts, fd 1) writes its first lines by hand until pino is loaded:
 * the same corpus of calls is logged by a fresh logger (by hand) and by one whose pino is loaded
 * (through pino), each in its own process writing to stdout; the lines match byte for byte but
 * the time, and the access-log lines gathered meanwhile stay in order.
 */
import { expect, test } from "bun:test";
import { resolve } from "node:path";

const LOG = resolve(import.meta.dir, "../../src/log.ts");

const script = (viaPino: boolean) => `
import { accessLogger, createLogger } from ${JSON.stringify(LOG)};
const root = createLogger("debug", 1);
if (${viaPino}) root.info({ err: new Error("loads pino") }, "first");
const worker = root.child({ worker: 2, name: "w \\"q\\"" });
const access = accessLogger(worker);
for (const log of [root, worker]) {
  log.info("plain message");
  log.warn("no API keys exist yet; create one with: feature-store keys create --tenant default --scopes admin");
  log.info({ url: "http://127.0.0.1:8000/", database: "sqlite", database_location: "/tmp/x y/feature-store.db", cache: "in_process", version: "0.1.0" }, "feature-store serving");
  log.info({ signal: "SIGTERM" }, "draining");
  log.warn({ timeout_s: 10, n: -0.5, big: 1e21, ok: true, none: null, skipped: undefined }, "drain deadline reached");
  log.debug({ attempt: 3 }, "key reload done");
  log.trace("not written at debug");
  log.info({ only: "fields" });
  log.info({ quote: 'a"b\\\\c', ctl: "tab\\there", uni: "ümlaut ✓", long: "x".repeat(150) }, 'msg "quoted" \\\\ back');
  access("req-1", "GET", "/healthz", 200, 0.142, Date.parse("2026-01-01T00:00:00.000Z"));
  log.error({ op: "listKeys" }, "store call failed");
}
`;

function run(viaPino: boolean): string[] {
  const p = Bun.spawnSync([process.execPath, "-e", script(viaPino)], { stdout: "pipe", stderr: "pipe" });
  expect(p.stderr.toString()).toBe("");
  return p.stdout
    .toString()
    .split("\n")
    .filter((l) => l !== "" && !l.includes('"msg":"first"'))
    .map((l) => (l.includes('"route":"/healthz"') ? l : l.replace(/"time":"[^"]+"/, '"time":"T"')));
}

test("lines written by hand before pino are pino's lines", () => {
  const byHand = run(false);
  const viaPino = run(true);
  expect(byHand.length).toBe(20);
  expect(byHand).toEqual(viaPino);
  expect(byHand.some((l) => l.includes('"worker":2'))).toBe(true);
  expect(byHand.some((l) => l.includes('"time":"2026-01-01T00:00:00.000Z"'))).toBe(true);
});

test("a server's access lines, recorded and formatted in batches, are each request's line in order", () => {
  // times across second boundaries, fractional milliseconds, before 1970; ids needing escapes;
  // other lines in between (each must come after every access line recorded before it)
  const times = Array.from({ length: 1500 }, (_, i) => (i % 7 === 0 ? 1_767_225_599_990 + i * 3 : i % 11 === 0 ? -1_500 + i + 0.25 : 1_767_225_600_000 + i * 1.5));
  const code = `
import { accessLogger, createLogger } from ${JSON.stringify(LOG)};
const log = createLogger("info", 1).child({ worker: 3 });
const access = accessLogger(log);
const times = ${JSON.stringify(times)};
times.forEach((at, i) => {
  access(i % 5 === 0 ? undefined : i % 13 === 0 ? 'id "' + i + '"' : "r" + i, i % 2 ? "GET" : "POST", i % 3 ? "/healthz" : "/api/v1/features/online", 200 + (i % 4), i / 7, at);
  if (i % 97 === 96) log.warn({ i }, "between");
});
`;
  const p = Bun.spawnSync([process.execPath, "-e", code], { stdout: "pipe", stderr: "pipe" });
  expect(p.stderr.toString()).toBe("");
  const lines = p.stdout.toString().split("\n").filter((l) => l !== "");
  const expected: string[] = [];
  times.forEach((at, i) => {
    const id = i % 5 === 0 ? undefined : i % 13 === 0 ? `id "${i}"` : `r${i}`;
    expected.push(
      JSON.stringify({ level: "info", time: new Date(at).toISOString(), service: "feature-store", worker: 3, request_id: id, method: i % 2 ? "GET" : "POST", route: i % 3 ? "/healthz" : "/api/v1/features/online", status: 200 + (i % 4), duration_ms: i / 7, msg: "request" }),
    );
    if (i % 97 === 96) expected.push(`{"level":"warn","time":"T","service":"feature-store","worker":3,"i":${i},"msg":"between"}`);
  });
  expect(lines.map((l) => (l.includes('"msg":"between"') ? l.replace(/"time":"[^"]+"/, '"time":"T"') : l))).toEqual(expected);
});
