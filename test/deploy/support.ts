/**
 * Shared by the deploy tests: paths, tools that are installed when missing (apt-get for
 * promtool, PyPI into .cache/venv for the schema validators), reading the manifests, and
 * what the binary accepts (settings, commands, metric names).
 *
 * Missing tools: installed on the fly (as root, as CI is). When one is still missing, the
 * suite that needs it is skipped locally, but FAILS when `CI` is set.
 */
import { test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseAllDocuments } from "yaml";
import { ConfigSchema } from "../../src/config.ts";
import { aptInstall } from "../harness/services.ts";

/** Repository root. */
export const ROOT = resolve(import.meta.dir, "../..");
/** The compiled binary under test (`bun run build`), or FS_BINARY. */
export const BIN = resolve(process.env.FS_BINARY ?? join(ROOT, "dist/feature-store"));
/** True in CI: a missing tool is a failure, not a skip. */
export const CI = Boolean(process.env.CI);
export const VENV = join(ROOT, ".cache/venv");
export const DEPLOY = join(ROOT, "deploy");

/** Result of a finished command. */
export interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion (no shell). */
export function sh(cmd: string[], opts: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {}): Ran {
  const p = Bun.spawnSync(cmd, { cwd: opts.cwd ?? ROOT, env: opts.env ?? { PATH: process.env.PATH ?? "/usr/bin:/bin" }, stdout: "pipe", stderr: "pipe", timeout: opts.timeoutMs ?? 120_000 });
  return { code: p.exitCode ?? -1, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

/** Path of an executable on PATH (or at one of `extra`), else undefined. */
export function which(name: string, extra: string[] = []): string | undefined {
  for (const dir of [...(process.env.PATH ?? "").split(":"), "/usr/sbin", "/usr/bin", "/sbin", "/bin"]) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return extra.find((p) => existsSync(p));
}

export const isRoot = typeof process.getuid === "function" && process.getuid() === 0;

/**
 * A tool the tests need: its path, or, when it is missing and could not be installed, the
 * reason (the suite is then skipped locally and failed in CI: see {@link suiteFor}).
 */
export type Tool = { path: string; missing?: undefined } | { path?: undefined; missing: string };

/** promtool, from Debian's `prometheus` package (the service is never started). */
export async function promtool(): Promise<Tool> {
  const found = which("promtool");
  if (found) return { path: found };
  if (!isRoot) return { missing: "promtool is not installed (run `apt-get install -y prometheus` as root)" };
  try {
    // aptInstall keeps maintainer scripts from starting the prometheus service (policy-rc.d).
    await aptInstall(["prometheus"]);
  } catch (e) {
    return { missing: `apt-get install prometheus failed: ${(e as Error).message}` };
  }
  const after = which("promtool");
  return after ? { path: after } : { missing: "apt-get install prometheus did not provide promtool" };
}

let venvReady: Promise<string | undefined> | undefined;

/**
 * The Python tools of test/deploy/requirements.txt (kubernetes-validate, check-jsonschema),
 * installed into .cache/venv (shared with the fuzz step's schemathesis) when missing.
 */
export function pythonTool(name: "kubernetes-validate" | "check-jsonschema"): Promise<Tool> {
  venvReady ??= (async () => {
    const want = ["kubernetes-validate", "check-jsonschema"].map((t) => join(VENV, "bin", t));
    if (want.every((p) => existsSync(p))) return undefined;
    const python = which("python3");
    if (!python) return "python3 is missing (apt-get install -y python3 python3-venv)";
    if (!existsSync(join(VENV, "bin/pip"))) {
      let mk = sh([python, "-m", "venv", VENV], { env: { ...process.env } as Record<string, string>, timeoutMs: 300_000 });
      if (mk.code !== 0 && isRoot) {
        // Debian's python3 needs python3-venv for ensurepip
        await aptInstall(["python3-venv"]).catch(() => undefined);
        mk = sh([python, "-m", "venv", VENV], { env: { ...process.env } as Record<string, string>, timeoutMs: 300_000 });
      }
      if (mk.code !== 0) return `python3 -m venv ${VENV} failed: ${mk.stderr.trim().split("\n").slice(-3).join(" ")}`;
    }
    const pip = sh([join(VENV, "bin/pip"), "install", "-q", "--disable-pip-version-check", "-r", join(import.meta.dir, "requirements.txt")], {
      env: { ...process.env } as Record<string, string>,
      timeoutMs: 600_000,
    });
    if (pip.code !== 0) return `pip install -r test/deploy/requirements.txt failed: ${(pip.stderr || pip.stdout).trim().split("\n").slice(-5).join(" ")}`;
    return undefined;
  })();
  return venvReady.then((err) => {
    const path = join(VENV, "bin", name);
    if (existsSync(path)) return { path };
    return { missing: err ?? `${path} is missing after installing test/deploy/requirements.txt` };
  });
}

/**
 * Registers a suite that needs `tools`: runs `body` with their paths when all are there. When
 * one is missing: in CI, one failing test that says why; elsewhere, a skipped test that says why.
 */
export function withTools<T extends Record<string, Tool>>(tools: T, body: (paths: { [K in keyof T]: string }) => void): void {
  const missing = Object.values(tools)
    .map((t) => t.missing)
    .filter((m): m is string => m !== undefined);
  if (missing.length === 0) {
    body(Object.fromEntries(Object.entries(tools).map(([k, t]) => [k, t.path as string])) as { [K in keyof T]: string });
    return;
  }
  const why = missing.join("; ");
  if (CI) {
    test(`required tools are available (CI): ${Object.keys(tools).join(", ")}`, () => {
      throw new Error(why);
    });
  } else {
    console.warn(`[deploy tests] skipping: ${why}`);
    test.skip(`needs ${Object.keys(tools).join(", ")}: ${why}`, () => {});
  }
}

// ───────────────────────────── what the binary accepts ─────────────────────────────

/** Every setting's environment variable name (the keys of ConfigSchema). */
export const SETTINGS: ReadonlySet<string> = new Set(Object.keys(ConfigSchema.shape));

/** The variables that may be given as X_FILE (SECRET_VARS in src/config.ts, read from the source: it is not exported). */
export function secretVars(): string[] {
  const src = readFileSync(join(ROOT, "src/config.ts"), "utf8");
  const m = /const SECRET_VARS\s*=\s*\[([^\]]*)\]/.exec(src);
  if (!m?.[1]) throw new Error("src/config.ts: SECRET_VARS not found");
  return [...m[1].matchAll(/"([A-Z0-9_]+)"/g)].map((x) => x[1] as string);
}

/** True when `name` is a setting or the X_FILE form of a secret-bearing one. */
export function isKnownVariable(name: string): boolean {
  if (SETTINGS.has(name)) return true;
  return name.endsWith("_FILE") && secretVars().includes(name.slice(0, -"_FILE".length));
}

/** The command names of src/cli.ts (its COMMANDS table, read from the source: importing cli.ts runs it). */
export function cliCommands(): string[] {
  const src = readFileSync(join(ROOT, "src/cli.ts"), "utf8");
  const table = /^const COMMANDS\b.*\{\n([\s\S]*?)\n\};/m.exec(src)?.[1];
  if (!table) throw new Error("src/cli.ts: COMMANDS table not found");
  return [...table.matchAll(/^\s{2}([a-z][a-z-]*):\s*\{/gm)].map((m) => m[1] as string);
}

// ───────────────────────────── reading the manifests ─────────────────────────────

/** A parsed YAML document with its file. */
export interface Doc {
  file: string;
  value: Record<string, unknown>;
}

/** Every document of every YAML file (merge keys `<<` resolved). */
export function loadYaml(file: string): Record<string, unknown>[] {
  const docs = parseAllDocuments(readFileSync(file, "utf8"), { merge: true });
  return docs.map((d) => {
    if (d.errors.length > 0) throw new Error(`${file}: ${d.errors[0]?.message}`);
    return d.toJS({ maxAliasCount: 1000 }) as Record<string, unknown>;
  });
}

/** The Kubernetes manifests: every *.yaml under deploy/k8s except kustomization.yaml. */
export function k8sFiles(): string[] {
  const dir = join(DEPLOY, "k8s");
  return readdirSync(dir)
    .filter((f) => /\.ya?ml$/.test(f) && f !== "kustomization.yaml")
    .sort()
    .map((f) => join(dir, f));
}

/** Every Kubernetes object in deploy/k8s. */
export function k8sObjects(): Doc[] {
  return k8sFiles().flatMap((file) => loadYaml(file).filter((v) => v !== null).map((value) => ({ file, value })));
}

/**
 * A node of a parsed manifest. Deliberately `any`: the tests walk free-form YAML and JSON by
 * path (spec.template.spec.containers[0]...), and a wrong path fails the assertion that uses it.
 */
export type Json = any;

/** The pod template's spec of a workload (Deployment, Job), or undefined. */
export function podSpec(obj: Json): Json {
  return obj?.spec?.template?.spec;
}

/** The objects of one kind. */
export function ofKind(objs: Doc[], kind: string): Doc[] {
  return objs.filter((o) => o.value.kind === kind);
}

/** Object by kind and name; throws when absent. */
export function named(objs: Doc[], kind: string, name: string): Json {
  const o = objs.find((x) => x.value.kind === kind && (x.value.metadata as Json)?.name === name);
  if (!o) throw new Error(`no ${kind} ${name} in deploy/k8s`);
  return o.value;
}

// ───────────────────────────── the Dockerfile ─────────────────────────────

/** One instruction of a Dockerfile (continuation lines joined, comments dropped). */
export interface Instruction {
  op: string;
  args: string;
}

/** A stage: FROM image [AS name] and its instructions. */
export interface Stage {
  image: string;
  name?: string;
  body: Instruction[];
}

/** Parses the top-level Dockerfile into stages. */
export function dockerfileStages(file = join(ROOT, "Dockerfile")): Stage[] {
  const lines = readFileSync(file, "utf8").split("\n");
  const instructions: Instruction[] = [];
  let cur = "";
  for (const raw of lines) {
    if (/^\s*#/.test(raw) && cur === "") continue;
    if (/^\s*#/.test(raw)) continue; // a comment inside a continued instruction
    const line = raw.replace(/\s+$/, "");
    if (line.endsWith("\\")) {
      cur += `${line.slice(0, -1)} `;
      continue;
    }
    cur += line;
    if (cur.trim() !== "") {
      const m = /^\s*(\S+)\s*([\s\S]*)$/.exec(cur) as RegExpExecArray;
      instructions.push({ op: (m[1] as string).toUpperCase(), args: (m[2] as string).trim() });
    }
    cur = "";
  }
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.op === "FROM") {
      const m = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      if (!m) throw new Error(`Dockerfile: cannot read FROM ${ins.args}`);
      stages.push({ image: m[1] as string, name: m[2], body: [] });
    } else if (stages.length > 0) {
      (stages.at(-1) as Stage).body.push(ins);
    } else if (ins.op !== "ARG") {
      throw new Error(`Dockerfile: ${ins.op} before the first FROM`);
    }
  }
  return stages;
}

/** The JSON array of an exec-form instruction (`["a", "b"]`), or undefined for shell form. */
export function execForm(args: string): string[] | undefined {
  const json = args.slice(args.indexOf("["));
  if (!json.startsWith("[")) return undefined;
  try {
    const v = JSON.parse(json);
    return Array.isArray(v) && v.every((x) => typeof x === "string") ? v : undefined;
  } catch {
    return undefined;
  }
}

// ───────────────────────────── the live binary ─────────────────────────────

/** Polls `url` until it answers `status` (default 200). */
export async function waitFor(url: string, status = 200, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  let last = "no answer";
  while (Date.now() < end) {
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (r.status === status) return;
      last = `HTTP ${r.status}`;
    } catch (e) {
      last = (e as Error).message;
    }
    await Bun.sleep(50);
  }
  throw new Error(`${url} did not answer ${status} within ${timeoutMs} ms (last: ${last})`);
}

/**
 * Metric family names in a Prometheus text exposition (from its # TYPE lines), with the
 * series names each family produces (histogram: _bucket, _sum, _count; summary: _sum, _count).
 */
export function metricFamilies(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) out.set(m[1] as string, m[2] as string);
  return out;
}

/** Every series name a set of families can produce. */
export function seriesNames(families: Map<string, string>): Set<string> {
  const names = new Set<string>();
  for (const [name, type] of families) {
    names.add(name);
    if (type === "histogram") for (const s of ["_bucket", "_sum", "_count"]) names.add(name + s);
    if (type === "summary") for (const s of ["_sum", "_count"]) names.add(name + s);
  }
  return names;
}

/** A running `dist/feature-store serve` on 127.0.0.1 with an embedded database in a temp dir. */
export interface LiveServer {
  base: string;
  stop(): Promise<void>;
}

/** Starts the compiled binary's `serve` (embedded stores) and waits for /healthz. */
export async function startServer(): Promise<LiveServer> {
  const { freePort } = await import("../harness/services.ts");
  const { mkdtempSync, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const dir = mkdtempSync(join(tmpdir(), "fs-deploy-"));
  const port = await freePort();
  const p = Bun.spawn([BIN, "serve", "--port", String(port), "--host", "127.0.0.1"], {
    env: { PATH: process.env.PATH ?? "", DATA_DIR: dir, LOG_LEVEL: "warn", SHUTDOWN_TIMEOUT: "1" },
    stdin: "ignore",
    stdout: "ignore",
    stderr: "pipe",
  });
  const base = `http://127.0.0.1:${port}`;
  try {
    await waitFor(`${base}/healthz`);
  } catch (e) {
    p.kill("SIGKILL");
    throw new Error(`${(e as Error).message}\n${await new Response(p.stderr).text()}`);
  }
  return {
    base,
    async stop() {
      p.kill("SIGKILL");
      await p.exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ───────────────────────────── PromQL ─────────────────────────────

const PROMQL_KEYWORDS = new Set(["and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "inf", "nan", "atan2", "start", "end"]);

/**
 * The metric (series) names a PromQL expression selects. A small lexer: strings, label
 * matchers, ranges and grouping clauses are dropped; identifiers followed by `(` are functions
 * or aggregations; Grafana variables ($x, ${x}) are ignored.
 */
export function promqlMetricNames(expr: string): string[] {
  let s = expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""');
  s = s.replace(/\$\{?\w+\}?/g, " ");
  s = s.replace(/\{[^}]*\}/g, " ");
  s = s.replace(/\[[^\]]*\]/g, " ");
  s = s.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ");
  const out = new Set<string>();
  for (const m of s.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const at = m.index ?? 0;
    if (at > 0 && /[0-9.]/.test(s[at - 1] as string)) continue; // 1e3, 5m
    if (s.slice(at + m[0].length).trimStart().startsWith("(")) continue;
    if (PROMQL_KEYWORDS.has(m[0].toLowerCase())) continue;
    out.add(m[0]);
  }
  return [...out];
}

/** A Grafana expression made plain PromQL (for promtool): its variables replaced by sample values. */
export function grafanaToPromql(expr: string): string {
  return expr
    .replace(/\$__rate_interval|\$__interval|\$\{__rate_interval\}|\$\{__interval\}/g, "1m")
    .replace(/\$__range|\$\{__range\}/g, "1h")
    .replace(/\$\{?\w+\}?/g, ".*");
}

/** Every query of a Grafana dashboard (panels, rows' nested panels, and query variables). */
export function dashboardQueries(dashboard: Json): { where: string; expr: string }[] {
  const out: { where: string; expr: string }[] = [];
  const visit = (panels: Json[]) => {
    for (const p of panels ?? []) {
      for (const t of p.targets ?? []) if (t.expr) out.push({ where: `panel "${p.title}" ${t.refId}`, expr: t.expr });
      visit(p.panels);
    }
  };
  visit(dashboard.panels);
  for (const v of dashboard.templating?.list ?? []) {
    const q = typeof v.query === "string" ? v.query : v.query?.query;
    const m = q ? /^label_values\((.*),\s*\w+\)$/.exec(q) : null;
    if (m) out.push({ where: `variable ${v.name}`, expr: m[1] as string });
  }
  return out;
}
