/**
 * The README's Quick start, run as written: its bash block, command by command, against the
 * compiled binary serving a fresh DATA_DIR, and every output it shows compared with what the
 * command printed. Shown outputs are the `#    -> ...` comment lines under a command (with `…`
 * standing for anything, and any RFC 3339 time for any time), and, for the online request, the
 * JSON block after the script. Whitespace is not compared.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { freePort } from "../harness/services.ts";

const BIN = resolve(process.env.FS_BINARY ?? "dist/feature-store");
const ROOT = resolve(import.meta.dir, "../..");

if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run \`bun run build\` first (npm test does)`);

interface Step {
  command: string;
  /** the output the README shows for it, if any */
  shown?: string;
}

/** The Quick start's bash block as commands (a command spans continued lines and open quotes), and the JSON block after it. */
function quickStart(readme: string): { steps: Step[]; onlineAnswer: string } {
  const section = readme.slice(readme.indexOf("\n## Quick start"), readme.indexOf("\n## ", readme.indexOf("\n## Quick start") + 1));
  const bash = /```bash\n([\s\S]*?)```/.exec(section)?.[1];
  const json = /```json\n([\s\S]*?)```/.exec(section)?.[1];
  if (!bash || !json) throw new Error("the README Quick start has no bash block followed by a json block");
  const steps: Step[] = [];
  let open: string[] = [];
  let inShown = false;
  for (const line of bash.split("\n")) {
    const shownStart = /^#\s+-> (.*)$/.exec(line);
    const shownMore = inShown ? /^#\s{5,}(\S.*)$/.exec(line) : null;
    const last = steps.at(-1);
    if (shownStart || shownMore) {
      if (last) last.shown = shownStart ? shownStart[1] : `${last.shown}\n${shownMore?.[1]}`;
      inShown = true;
      continue;
    }
    inShown = false;
    if (open.length === 0 && (line.startsWith("#") || line.trim() === "")) continue;
    open.push(line);
    const text = open.join("\n");
    if (!line.endsWith("\\") && (text.match(/'/g) ?? []).length % 2 === 0) {
      steps.push({ command: text });
      open = [];
    }
  }
  return { steps, onlineAnswer: json };
}

/** A pattern for a shown output: whitespace ignored, `…` is anything, any RFC 3339 time is any time. */
function shownPattern(shown: string): RegExp {
  const TIME = "\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(?:\\.\\d+)?Z";
  const parts = shown.replace(/\s+/g, "").split(new RegExp(`(…|${TIME})`));
  // odd parts are the separators: `…` or a time
  const re = parts.map((p, i) => (i % 2 === 0 ? p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") : p === "…" ? "[\\s\\S]*?" : TIME)).join("");
  return new RegExp(`^${re}$`);
}

describe("the README Quick start, run as written", () => {
  let dataDir: string;
  let server: ReturnType<typeof Bun.spawn>;
  let base: string;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), "fs-quickstart-"));
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    server = Bun.spawn([BIN, "serve", "--port", String(port), "--host", "127.0.0.1"], {
      env: { PATH: process.env.PATH ?? "", DATA_DIR: dataDir, LOG_LEVEL: "warn" },
      stdout: "ignore",
      stderr: "ignore",
    });
    const end = Date.now() + 15_000;
    while (Date.now() < end && (await fetch(`${base}/healthz`).catch(() => undefined))?.status !== 200) await Bun.sleep(50);
  });

  afterAll(() => {
    server?.kill("SIGKILL");
    rmSync(dataDir, { recursive: true, force: true });
  });

  test("every command succeeds and prints what the README shows", () => {
    const { steps, onlineAnswer } = quickStart(readFileSync(join(ROOT, "README.md"), "utf8"));
    expect(steps.map((s) => /^(KEY=|\S+)/.exec(s.command)?.[0])).toEqual(["KEY=", "./dist/feature-store", "curl", "./dist/feature-store", "curl", "curl", "curl"]);
    const MARK = "@@quickstart-step-end@@";
    const script = [
      "set -eu",
      ...steps.flatMap((s) => [
        s.command.replaceAll("http://localhost:8000", base).replaceAll("./dist/feature-store", BIN).replace(/^curl /, "curl -sS "),
        // no pause after `keys create`: the server checks an unknown key against the database (issue 10 item 3)
        `echo; echo ${MARK}`,
      ]),
    ].join("\n");
    const run = Bun.spawnSync(["bash", "-c", script], { cwd: ROOT, env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", DATA_DIR: dataDir }, stdout: "pipe", stderr: "pipe" });
    expect(run.exitCode, run.stderr.toString()).toBe(0);
    const outputs = run.stdout.toString().split(`${MARK}\n`).map((o) => o.trim());
    expect(outputs).toHaveLength(steps.length + 1);

    const checked: string[] = [];
    steps.forEach((s, i) => {
      const out = (outputs[i] ?? "").replace(/\s+/g, "");
      const shown = s.command.includes("/features/online") ? onlineAnswer : s.shown;
      if (shown === undefined) return;
      checked.push(s.command.split("\n")[0] as string);
      expect([s.command, out]).toEqual([s.command, expect.stringMatching(shownPattern(shown))]);
    });
    expect(checked).toHaveLength(5);

    // the batch answer, as the text under the script describes it: everyone's values at midnight UTC
    const midnight = Math.floor(Date.now() / 86_400_000) * 86_400_000;
    const batch = JSON.parse(outputs[6] ?? "") as { results: { entity_id: string; timestamp: string; features: Record<string, unknown>; metadata: Record<string, { status: string; event_time: string }> }[] };
    expect(batch.results.map((r) => r.entity_id)).toEqual(["user_1", "user_2", "user_123"]);
    for (const r of batch.results) {
      expect(Date.parse(r.timestamp)).toBe(midnight);
      expect(typeof r.features.user_age).toBe("number");
      expect(typeof r.features.user_lifetime_value).toBe("number");
      for (const m of Object.values(r.metadata)) expect(Date.parse(m.event_time)).toBeLessThanOrEqual(midnight);
    }
    // user_123's seeded age, not the 34 written after midnight
    expect(batch.results[2]?.features.user_age).not.toBe(34);
  }, 120_000);
});
