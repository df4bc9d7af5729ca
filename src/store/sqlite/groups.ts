/** Feature views and services on the embedded database (table `feature_groups`). */
import type { Database as Sqlite, Statement } from "bun:sqlite";
import type { GroupKind, GroupRow, GroupSpec, MetadataUpdate, NewGroup } from "../types.ts";

interface GroupRecord {
  id: number;
  tenant: string;
  kind: string;
  name: string;
  version: number;
  spec: string;
  description: string | null;
  owner: string | null;
  tags: string;
  created_at: number;
  updated_at: number;
}

function toGroup(r: GroupRecord): GroupRow {
  return {
    ...r,
    kind: r.kind as GroupKind,
    spec: JSON.parse(r.spec) as GroupSpec,
    tags: JSON.parse(r.tags) as Record<string, string>,
  };
}

/** Prepared statements of `feature_groups` (prepare after migrating). */
export class SqliteGroups {
  private readonly all: Statement;
  private readonly ofTenant: Statement;
  private readonly insert: Statement;
  private readonly update: Statement;

  constructor(db: Sqlite) {
    this.all = db.prepare("SELECT * FROM feature_groups ORDER BY id");
    this.ofTenant = db.prepare("SELECT * FROM feature_groups WHERE tenant = ? ORDER BY id");
    this.insert = db.prepare(
      `INSERT INTO feature_groups (tenant, kind, name, version, spec, description, owner, tags, created_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
    );
    this.update = db.prepare("UPDATE feature_groups SET description = ?, owner = ?, tags = ?, updated_at = ? WHERE id = ?");
  }

  load(tenant?: string): GroupRow[] {
    const rows = (tenant === undefined ? this.all.all() : this.ofTenant.all(tenant)) as GroupRecord[];
    return rows.map(toGroup);
  }

  /** Applies inserts and updates inside the caller's transaction; returns the inserted rows. */
  apply(inserts: readonly NewGroup[], updates: readonly MetadataUpdate[]): GroupRow[] {
    const out = inserts.map(
      (g) =>
        this.insert.get(
          g.tenant, g.kind, g.name, g.version, JSON.stringify(g.spec),
          g.description, g.owner, JSON.stringify(g.tags), g.created_at, g.updated_at,
        ) as GroupRecord,
    );
    for (const u of updates) this.update.run(u.description, u.owner, JSON.stringify(u.tags), u.updated_at, u.id);
    return out.map(toGroup);
  }
}
