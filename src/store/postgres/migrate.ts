/** Schema migrations of the PostgreSQL backend: one transaction each, under an advisory lock. */
import { postgresMigrations } from "../../../migrations/index.ts";
import type { Logger } from "../../log.ts";
import { migrationChecksum, pendingMigrations, type AppliedMigration } from "../migrations.ts";
import type { Sql } from "./client.ts";

/** pg_advisory_xact_lock(LOCK_NAMESPACE, n): 1 migrations (2 is partition DDL, see partitions.ts). */
const LOCK_NAMESPACE = 0x6673;
const LOCK_MIGRATIONS = 1;

/** Applies pending migrations; a concurrent run waits, then finds nothing left. Returns the names applied now. */
export async function applyMigrations(sql: Sql, log: Logger): Promise<string[]> {
  const applied: string[] = [];
  for (;;) {
    // One transaction per migration, each under the advisory lock, re-reading what is applied:
    // a concurrent `migrate` waits, then finds nothing left to do.
    const name = await sql.begin(async (tx) => {
      await tx`SELECT set_config('statement_timeout', '0', true)`;
      await tx`SELECT pg_advisory_xact_lock(${LOCK_NAMESPACE}, ${LOCK_MIGRATIONS})`;
      await tx`CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, checksum text NOT NULL, applied_at bigint NOT NULL)`;
      const done = await tx<AppliedMigration[]>`SELECT name, checksum FROM schema_migrations ORDER BY name`;
      const next = pendingMigrations(postgresMigrations, [...done])[0];
      if (!next) return null;
      await tx.unsafe(next.sql);
      await tx`INSERT INTO schema_migrations (name, checksum, applied_at) VALUES (${next.name}, ${migrationChecksum(next)}, ${Date.now()})`;
      return next.name;
    });
    if (name === null) break;
    log.info({ migration: name }, "applied migration");
    applied.push(name);
  }
  return applied;
}

/** The migrations the database has applied (none when it has no schema_migrations table). */
export async function appliedMigrations(sql: Sql): Promise<AppliedMigration[]> {
  const [t] = await sql<{ exists: boolean }[]>`SELECT to_regclass('schema_migrations') IS NOT NULL AS exists`;
  if (!t?.exists) return [];
  return [...(await sql<AppliedMigration[]>`SELECT name, checksum FROM schema_migrations ORDER BY name`)];
}
