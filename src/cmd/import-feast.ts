import { readFileSync } from "node:fs";
import { stringify as toYaml } from "yaml";
import { ServiceBody, ViewBody } from "../catalog-schemas.ts";
import { toGroupInput } from "../api/routes/catalog.ts";
import { RegisterBody, zodErrors } from "../schemas.ts";
import { convertFeastDump } from "../registry/feast-dump.ts";
import { registerCatalog, type GroupItem } from "../serving/catalog.ts";
import { TENANT_RE } from "../serving/keys.ts";
import type { RegisterItem } from "../serving/register.ts";
import { buildDeps, closeDeps, CliError, config, parseFlags, UsageError, type Command } from "./common.ts";

export const command: Command = {
  summary: "import a Feast registry (`feast registry-dump` output)",
  help: `Usage: feature-store import-feast DUMP.json --tenant T [--dry-run] [--no-ttl]
       feature-store import-feast DUMP.json --yaml [--no-ttl]

Reads what \`feast registry-dump\` prints for a Feast repo (DUMP.json, or - for stdin) and
registers its feature views (entity type and join keys from the view's entities; its push
source), their features (Feast types mapped to dtypes, the view's ttl as ttl_hours) and its
feature services, all or nothing, in one transaction. Prints one line per definition as
\`register\` does, then one \`unsupported\` line per part of the dump that has no equivalent
(on-demand and stream feature views, unmapped types, data sources, ...): nothing is dropped
silently.

Exit status: 0 on success (unsupported parts listed); 1 if any definition is in conflict or
invalid (nothing applied); 2 on a usage error or a file that cannot be read or parsed.

Options:
  --tenant T  the tenant to register for (required unless --yaml)
  --dry-run   print the same lines and exit as the real run would, applying nothing
  --no-ttl    leave ttl_hours out (Feast's own online store never enforces a view's ttl; here
              values older than ttl_hours are served as expired / OUTSIDE_MAX_AGE)
  --yaml      print the converted definitions as a \`register\` FILE.yaml instead (no database)`,
  async run(argv) {
    const { values, positionals } = parseFlags(argv, { tenant: { type: "string" }, "dry-run": { type: "boolean" }, yaml: { type: "boolean" }, "no-ttl": { type: "boolean" } }, true);
    if (positionals.length !== 1) throw new UsageError("exactly one DUMP.json (or -) is required");
    if (!values.yaml && !values.tenant) throw new UsageError("--tenant is required");
    if (values.tenant !== undefined && !TENANT_RE.test(values.tenant)) throw new UsageError("--tenant must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$");
    const file = positionals[0] as string;
    let text: string;
    try {
      text = readFileSync(file === "-" ? 0 : file, "utf8");
    } catch (e) {
      throw new CliError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, 2);
    }
    let imp: ReturnType<typeof convertFeastDump>;
    try {
      imp = convertFeastDump(text, { ttl: values["no-ttl"] !== true });
    } catch (e) {
      throw new CliError(`${file}: ${(e as Error).message}`, 2);
    }
    if (values.yaml) {
      const { features, feature_views, feature_services, unsupported } = imp;
      const notes = unsupported.map((u) => `# unsupported: ${u}`).join("\n");
      process.stdout.write(`# feature-store definitions converted from Feast project ${imp.project}\n${notes}${notes ? "\n" : ""}${toYaml({ features, feature_views, feature_services })}`);
      return 0;
    }

    const features: RegisterItem[] = imp.features.map((f) => {
      const r = RegisterBody.safeParse(f);
      return r.success ? { input: r.data } : { invalid: { name: f.name, version: f.version, reason: zodErrors(r.error).map((e) => `${e.path}: ${e.message}`).join("; ") } };
    });
    const groups: GroupItem[] = [
      ...imp.feature_views.map((v) => ["view", v, ViewBody] as const),
      ...imp.feature_services.map((s) => ["service", s, ServiceBody] as const),
    ].map(([kind, g, schema]) => {
      const r = schema.safeParse(g);
      return r.success ? { input: toGroupInput(kind, r.data) } : { invalid: { kind, name: g.name, version: g.version, reason: zodErrors(r.error).map((e) => `${e.path}: ${e.message}`).join("; ") } };
    });

    // the database goes to stderr, as for register: stdout is one line per definition
    const deps = await buildDeps(config(), { announce: { location: true, warnIfNew: true } });
    try {
      const { outcomes, ok } = await registerCatalog(deps, values.tenant as string, features, groups, values["dry-run"] === true);
      for (const o of outcomes) {
        const kind = o.kind === "feature" ? "" : `${o.kind} `;
        console.log(`${o.status.padEnd(11)} ${kind}${o.name}@${o.version}${o.reason ? `: ${o.reason}` : ""}`);
      }
      for (const u of imp.unsupported) console.log(`unsupported ${u}`);
      if (!ok) console.error(`nothing was applied: ${outcomes.filter((o) => o.status === "conflict" || o.status === "invalid").length} definition(s) in conflict or invalid`);
      else if (values["dry-run"]) console.error("dry run: nothing was applied");
      if (imp.unsupported.length > 0) console.error(`${imp.unsupported.length} part(s) of the Feast registry were not imported (listed above)`);
      return ok ? 0 : 1;
    } finally {
      await closeDeps(deps);
    }
  },
};
