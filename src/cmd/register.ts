import { readFileSync } from "node:fs";
import { parse as parseYaml, YAMLParseError } from "yaml";
import { RegisterBody, zodErrors } from "../schemas.ts";
import { TENANT_RE } from "../serving/keys.ts";
import { registerFeatures, type RegisterItem } from "../serving/register.ts";
import { applySources, planSources } from "../sources/register.ts";
import { parseGroups } from "./register-groups.ts";
import { registerCatalog } from "../serving/catalog.ts";
import { buildDeps, closeDeps, CliError, config, parseFlags, UsageError, type Command } from "./common.ts";

const READ_PROBLEMS: Record<string, string> = { ENOENT: "no such file", EACCES: "permission denied", EISDIR: "it is a directory" };

/** `FILE:LINE:COL: YAML syntax error: what (CODE)`, the form editors jump to. */
function yamlErrorLine(file: string, e: YAMLParseError): string {
  const at = e.linePos?.[0];
  const what = (e.message.split("\n")[0] ?? "").replace(/ at line \d+, column \d+:?$/, "");
  return `${file}${at ? `:${at.line}:${at.col}` : ""}: YAML syntax error: ${what} (${e.code})`;
}

export const command: Command = {
  summary: "register the feature definitions in a YAML file",
  help: `Usage: feature-store register FILE.yaml --tenant T [--dry-run]

Registers every definition in FILE (\`features: [ {name, version, dtype, entity_type,
ttl_hours?, description?, owner?, tags?}, ... ]\`, and optionally \`feature_views: [ {name,
version, entity_type, join_keys?, features, push_source?, ...} ]\` and \`feature_services:
[ {name, version, features, ...} ]\`) for tenant T, all or nothing, in one transaction.
Prints one line per definition: new, unchanged, updated (metadata only), conflict or invalid
(with the reason). FILE may also declare \`sources:\` (Parquet, CSV, PostgreSQL) for
\`feature-store materialize\`; each is checked and stored with the definitions.

Exit status: 0 on success; 1 if any definition is in conflict or invalid (nothing applied);
2 on a usage error or a file that cannot be read or parsed.

Options:
  --tenant T  the tenant to register for (required)
  --dry-run   print the same lines and exit as the real run would, applying nothing`,
  async run(argv) {
    const { values, positionals } = parseFlags(argv, { tenant: { type: "string" }, "dry-run": { type: "boolean" } }, true);
    if (positionals.length !== 1) throw new UsageError("exactly one FILE.yaml is required");
    if (!values.tenant) throw new UsageError("--tenant is required");
    if (!TENANT_RE.test(values.tenant)) throw new UsageError("--tenant must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$");
    const file = positionals[0] as string;

    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? "";
      throw new CliError(`cannot read ${file}: ${READ_PROBLEMS[code] ?? (code || (e as Error).message)}`, 2);
    }
    let doc: unknown;
    try {
      doc = parseYaml(text);
    } catch (e) {
      if (!(e instanceof YAMLParseError)) throw e;
      throw new CliError(yamlErrorLine(file, e), 2);
    }
    const catalog = parseGroups(doc, file);
    const sourcesRaw = (doc as { sources?: unknown } | null)?.sources;
    const list = (doc as { features?: unknown } | null)?.features ?? (catalog || sourcesRaw !== undefined ? [] : undefined);
    if (typeof doc !== "object" || doc === null || !Array.isArray(list)) throw new CliError(`${file}: expected a top-level \`features:\` list`, 2);

    const items: RegisterItem[] = list.map((raw: unknown, i) => {
      const r = RegisterBody.safeParse(raw);
      if (r.success) return { input: r.data };
      const o = (raw ?? {}) as { name?: unknown; version?: unknown };
      const reason = zodErrors(r.error).map((e) => `${e.path}: ${e.message}`).join("; ");
      return { invalid: { name: typeof o.name === "string" ? o.name : `features[${i}]`, version: typeof o.version === "number" ? o.version : 0, reason } };
    });

    const cfg = config();
    // the database goes to stderr: stdout is one line per definition
    const deps = await buildDeps(cfg, { announce: { location: true, warnIfNew: true } });
    try {
      const sources = await planSources(deps, values.tenant, sourcesRaw, file, items);
      const dry = values["dry-run"] === true || !sources.ok;
      const { outcomes, ok: featuresOk } = catalog
        ? await registerCatalog(deps, values.tenant, items, catalog, dry)
        : await registerFeatures(deps, values.tenant, items, dry);
      for (const o of outcomes) {
        const kind = "kind" in o && o.kind !== "feature" ? `${o.kind} ` : "";
        const what = kind + (o.version > 0 ? `${o.name}@${o.version}` : o.name);
        console.log(`${o.status.padEnd(9)} ${what}${o.reason ? `: ${o.reason}` : ""}`);
      }
      for (const o of sources.outcomes) console.log(`${o.status.padEnd(9)} source ${o.name}: ${o.detail}`);
      const ok = featuresOk && sources.ok;
      if (ok && !values["dry-run"]) await applySources(deps, values.tenant, sources.outcomes);
      if (!ok) console.error(`nothing was applied: ${outcomes.filter((o) => o.status === "conflict" || o.status === "invalid").length + sources.outcomes.filter((o) => o.status === "invalid").length} definition(s) in conflict or invalid`);
      else if (values["dry-run"]) console.error("dry run: nothing was applied");
      return ok ? 0 : 1;
    } finally {
      await closeDeps(deps);
    }
  },
};
