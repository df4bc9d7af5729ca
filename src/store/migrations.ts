import type { Migration } from "../../migrations/index.ts";

/** SHA-256 of a migration's text, recorded when applied. */
export function migrationChecksum(m: Migration): string {
  return new Bun.CryptoHasher("sha256").update(m.sql).digest("hex");
}

/** An applied migration as recorded in the database. */
export interface AppliedMigration {
  name: string;
  checksum: string;
}

/**
 * Compares the applied migrations with the embedded ones. Throws when an applied migration
 * is unknown to this binary or its text changed; returns the ones still pending, in order.
 */
export function pendingMigrations(all: Migration[], applied: AppliedMigration[]): Migration[] {
  const byName = new Map(all.map((m) => [m.name, m]));
  for (const a of applied) {
    const m = byName.get(a.name);
    if (!m) throw new Error(`database has migration ${a.name}, which this binary does not know (is the binary older than the database?)`);
    if (migrationChecksum(m) !== a.checksum)
      throw new Error(`migration ${a.name} was changed after it was applied (checksum mismatch); restore its original text`);
  }
  const done = new Set(applied.map((a) => a.name));
  return all.filter((m) => !done.has(m.name));
}
