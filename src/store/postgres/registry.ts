/** Definitions and API keys in PostgreSQL (the registry role); every change bumps the change feed's counter. */
import type { DtypeName } from "../../registry/dtype.ts";
import type { DefinitionRecord as PgDefinitionRecord } from "../../registry/definition.ts";
import type { CatalogPlan, DefinitionRow, GroupRow, KeyRow, RegisterPlan } from "../types.ts";
import type { PostgresChangeFeed } from "./change-feed.ts";
import { numberArray, textArray, timed, type Querier, type Sql } from "./client.ts";

/** pg_advisory_xact_lock(LOCK_TENANT_NAMESPACE, hashtext(tenant)) serialises a tenant's registrations. */
const LOCK_TENANT_NAMESPACE = 0x6674;

type DefinitionRecord = PgDefinitionRecord<Record<string, string>>;

/** Columns are selected one for one (DEFINITION_COLUMNS); only the dtype's type is narrowed. */
function toDefinition(r: DefinitionRecord): DefinitionRow {
  return { ...r, dtype: r.dtype as DtypeName };
}

const GROUP_COLUMNS = "id, tenant, kind, name, version, spec, description, owner, tags, created_at, updated_at";
const DEFINITION_COLUMNS = "id, tenant, name, version, dtype, entity_type, ttl_hours, description, owner, tags, created_at, updated_at";
/** scopes as JSON: text[] would come back unparsed (see client.ts on fetch_types) */
const KEY_COLUMNS = "id, tenant, to_json(scopes) AS scopes, hash, prefix, created_at, expires_at, revoked_at";

/** Definitions and keys; every change bumps its counter and notifies through the feed. */
export class PostgresRegistry {
  private readonly timed = <T>(what: string, p: Promise<T> & { cancel?: () => unknown }, ms = this.timeoutMs): Promise<T> => timed(what, p, ms);

  constructor(
    private readonly sql: Sql,
    private readonly feed: PostgresChangeFeed,
    private readonly timeoutMs: number,
  ) {}

  async loadDefinitions(tenant?: string): Promise<DefinitionRow[]> {
    const rows = await this.timed(
      "load definitions",
      tenant === undefined
        ? this.sql<DefinitionRecord[]>`SELECT ${this.sql.unsafe(DEFINITION_COLUMNS)} FROM feature_definitions ORDER BY id`
        : this.sql<DefinitionRecord[]>`SELECT ${this.sql.unsafe(DEFINITION_COLUMNS)} FROM feature_definitions WHERE tenant = ${tenant} ORDER BY id`,
    );
    return rows.map(toDefinition);
  }

  async registerDefinitions<T>(
    tenant: string,
    decide: (current: DefinitionRow[]) => { plan: RegisterPlan; apply: boolean; result: T },
  ): Promise<{ result: T; inserted: DefinitionRow[] }> {
    let version: number | undefined;
    const out = await this.timed(
      "register",
      this.sql.begin(async (tx) => {
        const current = await this.lockedDefinitions(tx, tenant);
        const { plan, apply, result } = decide(current);
        if (!apply || (plan.inserts.length === 0 && plan.updates.length === 0)) return { result, inserted: [] as DefinitionRow[] };
        const inserted = await this.applyDefinitionPlan(tx, plan);
        version = await this.feed.bump(tx, "definitions", tenant);
        return { result, inserted };
      }),
    );
    if (version !== undefined) this.feed.afterBump("definitions", version);
    return out;
  }

  /** Takes the tenant's registration lock in the caller's transaction, then reads its definitions. */
  private async lockedDefinitions(tx: Querier, tenant: string): Promise<DefinitionRow[]> {
    await tx`SELECT pg_advisory_xact_lock(${LOCK_TENANT_NAMESPACE}, hashtext(${tenant}))`;
    const rows = await tx<DefinitionRecord[]>`SELECT ${tx.unsafe(DEFINITION_COLUMNS)} FROM feature_definitions WHERE tenant = ${tenant} ORDER BY id`;
    return rows.map(toDefinition);
  }

  /** Inserts and updates definitions inside the caller's transaction; returns the inserted rows. */
  private async applyDefinitionPlan(tx: Querier, plan: RegisterPlan): Promise<DefinitionRow[]> {
    const inserted: DefinitionRow[] = [];
    if (plan.inserts.length > 0) {
      const d = plan.inserts;
      const rows = await tx<DefinitionRecord[]>`
        INSERT INTO feature_definitions (tenant, name, version, dtype, entity_type, ttl_hours, description, owner, tags, created_at, updated_at)
        SELECT tenant, name, version, dtype, entity_type, ttl_hours, description, owner, tags::jsonb, created_at, updated_at
        FROM unnest(${textArray(d.map((x) => x.tenant))}::text[], ${textArray(d.map((x) => x.name))}::text[],
                    ${numberArray(d.map((x) => x.version))}::int[], ${textArray(d.map((x) => x.dtype))}::text[],
                    ${textArray(d.map((x) => x.entity_type))}::text[], ${numberArray(d.map((x) => x.ttl_hours))}::float8[],
                    ${textArray(d.map((x) => x.description))}::text[], ${textArray(d.map((x) => x.owner))}::text[],
                    ${textArray(d.map((x) => JSON.stringify(x.tags)))}::text[],
                    ${numberArray(d.map((x) => x.created_at))}::bigint[], ${numberArray(d.map((x) => x.updated_at))}::bigint[])
             WITH ORDINALITY AS t(tenant, name, version, dtype, entity_type, ttl_hours, description, owner, tags, created_at, updated_at, ord)
        ORDER BY ord
        RETURNING ${tx.unsafe(DEFINITION_COLUMNS)}`;
      // identity values follow insertion order, which is plan order
      for (const r of [...rows].sort((a, b) => a.id - b.id)) inserted.push(toDefinition(r));
    }
    if (plan.updates.length > 0) {
      const u = plan.updates;
      await tx`
        UPDATE feature_definitions d
        SET description = u.description, owner = u.owner, tags = u.tags::jsonb, updated_at = u.updated_at
        FROM unnest(${numberArray(u.map((x) => x.id))}::bigint[], ${textArray(u.map((x) => x.description))}::text[],
                    ${textArray(u.map((x) => x.owner))}::text[], ${textArray(u.map((x) => JSON.stringify(x.tags)))}::text[],
                    ${numberArray(u.map((x) => x.updated_at))}::bigint[])
             AS u(id, description, owner, tags, updated_at)
        WHERE d.id = u.id`;
    }
    return inserted;
  }

  async loadGroups(tenant?: string): Promise<GroupRow[]> {
    const rows = await this.timed(
      "load groups",
      tenant === undefined
        ? this.sql<GroupRow[]>`SELECT ${this.sql.unsafe(GROUP_COLUMNS)} FROM feature_groups ORDER BY id`
        : this.sql<GroupRow[]>`SELECT ${this.sql.unsafe(GROUP_COLUMNS)} FROM feature_groups WHERE tenant = ${tenant} ORDER BY id`,
    );
    return [...rows];
  }

  /** Features, views and services of one tenant in one transaction under the tenant's lock. */
  async registerCatalog<T>(
    tenant: string,
    decide: (defs: DefinitionRow[], groups: GroupRow[]) => { plan: CatalogPlan; apply: boolean; result: T },
  ): Promise<{ result: T; inserted: DefinitionRow[]; insertedGroups: GroupRow[] }> {
    let version: number | undefined;
    const out = await this.timed(
      "register",
      this.sql.begin(async (tx) => {
        const current = await this.lockedDefinitions(tx, tenant);
        const groups = [...(await tx<GroupRow[]>`SELECT ${tx.unsafe(GROUP_COLUMNS)} FROM feature_groups WHERE tenant = ${tenant} ORDER BY id`)];
        const { plan, apply, result } = decide(current, groups);
        const empty = plan.inserts.length + plan.updates.length + plan.groupInserts.length + plan.groupUpdates.length === 0;
        if (!apply || empty) return { result, inserted: [] as DefinitionRow[], insertedGroups: [] as GroupRow[] };
        const inserted = await this.applyDefinitionPlan(tx, plan);
        const insertedGroups: GroupRow[] = [];
        // a registration holds a handful of views and services: one statement each is fine;
        // JSON travels as text cast to jsonb (a string parameter typed jsonb is stored double-encoded)
        for (const g of plan.groupInserts) {
          const [row] = await tx<GroupRow[]>`
            INSERT INTO feature_groups (tenant, kind, name, version, spec, description, owner, tags, created_at, updated_at)
            VALUES (${g.tenant}, ${g.kind}, ${g.name}, ${g.version}, ${JSON.stringify(g.spec)}::text::jsonb, ${g.description}, ${g.owner},
                    ${JSON.stringify(g.tags)}::text::jsonb, ${g.created_at}, ${g.updated_at})
            RETURNING ${tx.unsafe(GROUP_COLUMNS)}`;
          if (row) insertedGroups.push(row);
        }
        for (const u of plan.groupUpdates) {
          await tx`UPDATE feature_groups SET description = ${u.description}, owner = ${u.owner}, tags = ${JSON.stringify(u.tags)}::text::jsonb,
                   updated_at = ${u.updated_at} WHERE id = ${u.id}`;
        }
        version = await this.feed.bump(tx, "definitions", tenant);
        return { result, inserted, insertedGroups };
      }),
    );
    if (version !== undefined) this.feed.afterBump("definitions", version);
    return out;
  }

  async createKey(key: KeyRow): Promise<void> {
    const version = await this.timed(
      "create key",
      this.sql.begin(async (tx) => {
        await tx`
          INSERT INTO api_keys (id, tenant, scopes, hash, prefix, created_at, expires_at, revoked_at)
          VALUES (${key.id}, ${key.tenant}, ${textArray(key.scopes)}::text[], ${key.hash}, ${key.prefix}, ${key.created_at}, ${key.expires_at}, ${key.revoked_at})`;
        return this.feed.bump(tx, "keys");
      }),
    );
    this.feed.afterBump("keys", version);
  }

  async listKeys(tenant?: string): Promise<KeyRow[]> {
    // COLLATE "C": byte order, as SQLite sorts
    const rows = await this.timed(
      "list keys",
      tenant === undefined
        ? this.sql<KeyRow[]>`SELECT ${this.sql.unsafe(KEY_COLUMNS)} FROM api_keys ORDER BY created_at DESC, id COLLATE "C"`
        : this.sql<KeyRow[]>`SELECT ${this.sql.unsafe(KEY_COLUMNS)} FROM api_keys WHERE tenant = ${tenant} ORDER BY created_at DESC, id COLLATE "C"`,
    );
    return [...rows];
  }

  async revokeKey(id: string, at: number): Promise<boolean> {
    const version = await this.timed(
      "revoke key",
      this.sql.begin(async (tx) => {
        const r = await tx`UPDATE api_keys SET revoked_at = ${at} WHERE id = ${id} AND revoked_at IS NULL`;
        return r.count > 0 ? this.feed.bump(tx, "keys") : undefined;
      }),
    );
    if (version === undefined) return false;
    this.feed.afterBump("keys", version);
    return true;
  }
}
