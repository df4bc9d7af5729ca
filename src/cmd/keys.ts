import { generateKey, SCOPES, TENANT_RE, type Scope } from "../serving/keys.ts";
import { createLogger } from "../log.ts";
import type { RegistryStore } from "../store/types.ts";
import { CliError, config, ensureMigrated, openConfiguredDatabase, parseFlags, UsageError, type Command } from "./common.ts";

const DURATION = /^(\d+)([smhdw])$/;
const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** Parses `30d`, `12h`, `90m`... into milliseconds. */
function parseDuration(s: string): number {
  const m = DURATION.exec(s);
  if (!m || Number(m[1]) <= 0) throw new UsageError(`--expires-in: expected a duration like 30d, 12h or 90m, got ${JSON.stringify(s)}`);
  return Number(m[1]) * (UNIT_MS[m[2] as string] as number);
}

function iso(ms: number | null): string {
  return ms === null ? "-" : new Date(ms).toISOString();
}

async function withDb<T>(fn: (db: RegistryStore) => Promise<T>): Promise<T> {
  const cfg = config();
  // the location goes to stderr: stdout is parsed (keys create's key is its last line)
  const db = await openConfiguredDatabase(cfg, createLogger(cfg.LOG_LEVEL, 2), { location: true, warnIfNew: true });
  try {
    await ensureMigrated(db);
    return await fn(db);
  } catch (e) {
    if (e instanceof UsageError || e instanceof CliError) throw e;
    throw new CliError((e as Error).message);
  } finally {
    await db.close().catch(() => {});
  }
}

export const command: Command = {
  summary: "create, list and revoke API keys",
  help: `Usage:
  feature-store keys create --tenant T --scopes read,write,admin [--expires-in 30d]
  feature-store keys list [--tenant T]
  feature-store keys revoke ID

create  prints the new key's id and details, then the key itself as the LAST line of stdout.
        The key is shown once: only its SHA-256 hash is stored. Scopes: read (online, batch,
        definitions), write (read + writing values), admin (write + registering definitions).
list    prints id, tenant, scopes, key prefix, created, expires and revoked times (never a key).
revoke  revokes a key by id; running servers stop accepting it within a second.`,
  async run(argv) {
    const [sub, ...rest] = argv;
    switch (sub) {
      case "create": {
        const { values, positionals } = parseFlags(rest, { tenant: { type: "string" }, scopes: { type: "string" }, "expires-in": { type: "string" } }, true);
        if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]}`);
        if (!values.tenant) throw new UsageError("--tenant is required");
        if (!TENANT_RE.test(values.tenant)) throw new UsageError("--tenant must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$");
        if (!values.scopes) throw new UsageError("--scopes is required (comma-separated: read, write, admin)");
        const scopes = values.scopes.split(",").map((s) => s.trim()).filter(Boolean);
        const bad = scopes.filter((s) => !SCOPES.includes(s as Scope));
        if (scopes.length === 0 || bad.length > 0) throw new UsageError(`--scopes: unknown scope(s) ${bad.join(", ") || "(none given)"}; use read, write, admin`);
        const now = Date.now();
        const expiresAt = values["expires-in"] ? now + parseDuration(values["expires-in"]) : null;
        const { key, row } = generateKey(values.tenant, scopes as Scope[], now, expiresAt);
        await withDb((db) => db.createKey(row));
        console.log(`created key ${row.id} for tenant ${row.tenant} with scopes ${row.scopes.join(",")}${expiresAt ? `, expires ${iso(expiresAt)}` : ""}`);
        console.log("store this key now; it cannot be shown again:");
        console.log(key);
        return 0;
      }
      case "list": {
        const { values, positionals } = parseFlags(rest, { tenant: { type: "string" } }, true);
        if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]}`);
        const keys = await withDb((db) => db.listKeys(values.tenant));
        const rows = [["ID", "TENANT", "SCOPES", "PREFIX", "CREATED", "EXPIRES", "REVOKED"]];
        for (const k of keys) rows.push([k.id, k.tenant, k.scopes.join(","), `${k.prefix}…`, iso(k.created_at), iso(k.expires_at), iso(k.revoked_at)]);
        const widths = (rows[0] as string[]).map((_, i) => Math.max(...rows.map((r) => (r[i] as string).length)));
        for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i] as number)).join("  ").trimEnd());
        return 0;
      }
      case "revoke": {
        const { positionals } = parseFlags(rest, {}, true);
        if (positionals.length !== 1) throw new UsageError("revoke takes exactly one key id");
        const id = positionals[0] as string;
        const done = await withDb((db) => db.revokeKey(id, Date.now()));
        if (!done) throw new CliError(`no active key with id ${id}`);
        console.log(`revoked ${id}`);
        return 0;
      }
      case undefined:
        throw new UsageError("a subcommand is required: create, list or revoke");
      default:
        throw new UsageError(`unknown subcommand ${JSON.stringify(sub)}`);
    }
  },
};
