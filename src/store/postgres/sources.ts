/** {@link SourceStore} on PostgreSQL (tables of migration 0002_sources). */
import { toJob, type JobRecord } from "../job-record.ts";
import type { JobRow, SourceRow, SourceStateRow, SourceStore } from "../types.ts";
import type { Sql } from "./client.ts";

/** Source definitions, load state and jobs in PostgreSQL. */
export class PostgresSourceStore implements SourceStore {
  constructor(private readonly sql: Sql) {}

  async putSources(tenant: string, sources: { name: string; spec: unknown }[], now: number): Promise<void> {
    await this.sql.begin(async (tx) => {
      for (const s of sources)
        await tx`
          INSERT INTO sources (tenant, name, spec, created_at, updated_at) VALUES (${tenant}, ${s.name}, ${JSON.stringify(s.spec)}, ${now}, ${now})
          ON CONFLICT (tenant, name) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at`;
    });
  }

  async listSources(tenant: string): Promise<SourceRow[]> {
    const rows = await this.sql<(SourceRow & { spec: string })[]>`SELECT * FROM sources WHERE tenant = ${tenant} ORDER BY name COLLATE "C"`;
    return rows.map((r) => ({ ...r, spec: JSON.parse(r.spec) as unknown }));
  }

  async getSourceState(tenant: string, name: string): Promise<SourceStateRow | null> {
    const [r] = await this.sql<{ watermark: number | null; run: string | null; updated_at: number }[]>`
      SELECT watermark, run, updated_at FROM source_state WHERE tenant = ${tenant} AND name = ${name}`;
    return r ? { ...r, run: r.run === null ? null : (JSON.parse(r.run) as unknown) } : null;
  }

  async putSourceState(tenant: string, name: string, state: { watermark?: number | null; run?: unknown }, now: number): Promise<void> {
    const run = state.run === undefined ? undefined : state.run === null ? null : JSON.stringify(state.run);
    await this.sql`
      INSERT INTO source_state (tenant, name, watermark, run, updated_at) VALUES (${tenant}, ${name}, ${state.watermark ?? null}, ${run ?? null}, ${now})
      ON CONFLICT (tenant, name) DO UPDATE SET
        watermark = CASE WHEN ${state.watermark !== undefined} THEN excluded.watermark ELSE source_state.watermark END,
        run = CASE WHEN ${run !== undefined} THEN excluded.run ELSE source_state.run END,
        updated_at = excluded.updated_at`;
  }

  async createJob(job: JobRow): Promise<boolean> {
    const rows = await this.sql`
      INSERT INTO materialize_jobs (id, tenant, source, status, args, progress, result, error, created_at, updated_at)
      VALUES (${job.id}, ${job.tenant}, ${job.source}, ${job.status}, ${JSON.stringify(job.args)}, ${JSON.stringify(job.progress)},
              ${job.result === null ? null : JSON.stringify(job.result)}, ${job.error}, ${job.created_at}, ${job.updated_at})
      ON CONFLICT DO NOTHING RETURNING id`;
    return rows.length === 1;
  }

  async updateJob(id: string, patch: Partial<Pick<JobRow, "status" | "progress" | "result" | "error">>, now: number): Promise<void> {
    await this.sql`
      UPDATE materialize_jobs SET status = COALESCE(${patch.status ?? null}, status), progress = COALESCE(${patch.progress ? JSON.stringify(patch.progress) : null}, progress),
        result = COALESCE(${patch.result ? JSON.stringify(patch.result) : null}, result), error = COALESCE(${patch.error ?? null}, error), updated_at = ${now}
      WHERE id = ${id}`;
  }

  async getJob(tenant: string, id: string): Promise<JobRow | null> {
    const [r] = await this.sql<JobRecord[]>`SELECT * FROM materialize_jobs WHERE tenant = ${tenant} AND id = ${id}`;
    return r ? toJob(r) : null;
  }

  async listJobs(tenant: string, limit: number): Promise<JobRow[]> {
    const rows = await this.sql<JobRecord[]>`SELECT * FROM materialize_jobs WHERE tenant = ${tenant} ORDER BY created_at DESC, id COLLATE "C" LIMIT ${limit}`;
    return rows.map(toJob);
  }

  async interruptStaleJobs(before: number, now: number): Promise<number> {
    const r = await this.sql`UPDATE materialize_jobs SET status = 'interrupted', updated_at = ${now} WHERE status IN ('queued', 'running') AND updated_at < ${before}`;
    return r.count;
  }
}
