/** {@link SourceStore} on the embedded SQLite file (tables of migration 0002_sources). */
import type { Database as Sqlite } from "bun:sqlite";
import { toJob, type JobRecord } from "../job-record.ts";
import type { JobRow, SourceRow, SourceStateRow, SourceStore } from "../types.ts";

/** Source definitions, load state and jobs in the embedded database. */
export class SqliteSourceStore implements SourceStore {
  constructor(private readonly db: Sqlite) {}

  async putSources(tenant: string, sources: { name: string; spec: unknown }[], now: number): Promise<void> {
    const st = this.db.query(
      `INSERT INTO sources (tenant, name, spec, created_at, updated_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (tenant, name) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at`,
    );
    this.db.transaction(() => {
      for (const s of sources) st.run(tenant, s.name, JSON.stringify(s.spec), now, now);
    }).immediate();
  }

  async listSources(tenant: string): Promise<SourceRow[]> {
    const rows = this.db.query("SELECT * FROM sources WHERE tenant = ? ORDER BY name").all(tenant) as (SourceRow & { spec: string })[];
    return rows.map((r) => ({ ...r, spec: JSON.parse(r.spec) as unknown }));
  }

  async getSourceState(tenant: string, name: string): Promise<SourceStateRow | null> {
    const r = this.db.query("SELECT watermark, run, updated_at FROM source_state WHERE tenant = ? AND name = ?").get(tenant, name) as
      | { watermark: number | null; run: string | null; updated_at: number }
      | null;
    return r && { ...r, run: r.run === null ? null : (JSON.parse(r.run) as unknown) };
  }

  async putSourceState(tenant: string, name: string, state: { watermark?: number | null; run?: unknown }, now: number): Promise<void> {
    const run = state.run === undefined ? undefined : state.run === null ? null : JSON.stringify(state.run);
    this.db
      .query(
        `INSERT INTO source_state (tenant, name, watermark, run, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (tenant, name) DO UPDATE SET
           watermark = CASE WHEN ?6 THEN excluded.watermark ELSE source_state.watermark END,
           run = CASE WHEN ?7 THEN excluded.run ELSE source_state.run END,
           updated_at = excluded.updated_at`,
      )
      .run(tenant, name, state.watermark ?? null, run ?? null, now, state.watermark !== undefined, run !== undefined);
  }

  async createJob(job: JobRow): Promise<boolean> {
    try {
      this.db
        .query(
          `INSERT INTO materialize_jobs (id, tenant, source, status, args, progress, result, error, created_at, updated_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          job.id, job.tenant, job.source, job.status, JSON.stringify(job.args), JSON.stringify(job.progress),
          job.result === null ? null : JSON.stringify(job.result), job.error, job.created_at, job.updated_at,
        );
      return true;
    } catch (e) {
      if ((e as { code?: string }).code?.startsWith("SQLITE_CONSTRAINT")) return false;
      throw e;
    }
  }

  async updateJob(id: string, patch: Partial<Pick<JobRow, "status" | "progress" | "result" | "error">>, now: number): Promise<void> {
    this.db
      .query(
        `UPDATE materialize_jobs SET status = COALESCE(?, status), progress = COALESCE(?, progress),
           result = COALESCE(?, result), error = COALESCE(?, error), updated_at = ? WHERE id = ?`,
      )
      .run(
        patch.status ?? null, patch.progress ? JSON.stringify(patch.progress) : null,
        patch.result ? JSON.stringify(patch.result) : null, patch.error ?? null, now, id,
      );
  }

  async getJob(tenant: string, id: string): Promise<JobRow | null> {
    const r = this.db.query("SELECT * FROM materialize_jobs WHERE tenant = ? AND id = ?").get(tenant, id) as JobRecord | null;
    return r && toJob(r);
  }

  async listJobs(tenant: string, limit: number): Promise<JobRow[]> {
    const rows = this.db.query("SELECT * FROM materialize_jobs WHERE tenant = ? ORDER BY created_at DESC, id LIMIT ?").all(tenant, limit) as JobRecord[];
    return rows.map(toJob);
  }

  async interruptStaleJobs(before: number, now: number): Promise<number> {
    return this.db.query("UPDATE materialize_jobs SET status = 'interrupted', updated_at = ? WHERE status IN ('queued', 'running') AND updated_at < ?").run(now, before).changes;
  }
}
