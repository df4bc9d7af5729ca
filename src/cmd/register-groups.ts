/** `feature_views:` and `feature_services:` of a `register FILE.yaml`. */
import type { z } from "@hono/zod-openapi";
import { ServiceBody, ViewBody } from "../catalog-schemas.ts";
import { zodErrors } from "../schemas.ts";
import { toGroupInput } from "../api/routes/catalog.ts";
import type { GroupItem } from "../serving/catalog.ts";
import { CliError } from "./common.ts";

/** The file's views then services, validated; `undefined` when it has neither list. */
export function parseGroups(doc: unknown, file: string): GroupItem[] | undefined {
  if (typeof doc !== "object" || doc === null) return undefined;
  const d = doc as { feature_views?: unknown; feature_services?: unknown };
  if (d.feature_views === undefined && d.feature_services === undefined) return undefined;
  const out: GroupItem[] = [];
  for (const [key, kind, schema] of [
    ["feature_views", "view", ViewBody],
    ["feature_services", "service", ServiceBody],
  ] as const) {
    const list = d[key] ?? [];
    if (!Array.isArray(list)) throw new CliError(`${file}: \`${key}:\` must be a list`, 2);
    list.forEach((raw: unknown, i) => {
      const r = (schema as z.ZodType<z.output<typeof ViewBody> | z.output<typeof ServiceBody>>).safeParse(raw);
      if (r.success) {
        out.push({ input: toGroupInput(kind, r.data) });
        return;
      }
      const o = (raw ?? {}) as { name?: unknown; version?: unknown };
      const reason = zodErrors(r.error).map((e) => `${e.path}: ${e.message}`).join("; ");
      out.push({ invalid: { kind, name: typeof o.name === "string" ? o.name : `${key}[${i}]`, version: typeof o.version === "number" ? o.version : 0, reason } });
    });
  }
  return out;
}
