/**
 * Materialization jobs started over HTTP. Each job runs `materialize` in a child process of the
 * same binary (the bulk lane: the server's own thread, which answers online lookups, only
 * spawns it and reads its row), which records its status, progress and result in the job's row.
 *
 * A job's process ends with the server that started it and marks the job `interrupted`; a job
 * whose row has not been touched for {@link STALE_MS} (its process died with no chance to say
 * so) is reported `interrupted` too. An interrupted, failed or cancelled job can be resumed:
 * a new job with the same arguments continues from the source's saved position.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { AppError } from "../errors.ts";
import { formatTime } from "../lib/time.ts";
import { dbCall, type Deps } from "../serving/deps.ts";
import type { JobRow, SourceStore } from "../store/types.ts";
import { loadSource } from "./register.ts";

/** A running job's process touches its row at least this often (ms). */
export const HEARTBEAT_MS = 5_000;
/** A queued or running job not touched for this long has lost its process. */
export const STALE_MS = 30_000;

const JOB_ID = /^job_[A-Za-z0-9_-]{1,64}$/;

/** Arguments of a job, as the HTTP body gives them. */
export interface JobArgs {
  start?: string | undefined;
  end?: string | undefined;
  incremental?: boolean | undefined;
  skip_invalid?: boolean | undefined;
  chunk_rows?: number | undefined;
  resumes?: string | undefined;
}

/** A job as the API shows it. */
export function jobJson(j: JobRow) {
  return {
    id: j.id,
    source: j.source,
    status: j.status,
    args: j.args,
    progress: j.progress,
    result: j.result,
    error: j.error,
    created_at: formatTime(j.created_at),
    updated_at: formatTime(j.updated_at),
  };
}

/** The command line that runs this binary again (`bun src/cli.ts` in development). */
function selfCommand(): string[] {
  const script = process.argv[1];
  const compiled = !script || script.startsWith("/$bunfs/") || script.startsWith("B:/~BUN/") || !/\.[cm]?[jt]s$/.test(script);
  return compiled ? [process.execPath] : [process.execPath, script];
}

/** Starts, follows and cancels materialization jobs of this server. */
export class JobRunner {
  private readonly children = new Map<string, { kill(sig?: number | NodeJS.Signals): void }>();

  /** `sources`: where the job rows are read and written (the server passes the bulk lane's, whose writes never run on its serving thread). */
  constructor(
    private readonly deps: Deps,
    private readonly sources: SourceStore = deps.stores.registry.sources,
  ) {}

  /** A store call; a store that is down is a 503. */
  private db<T>(fn: (s: SourceStore) => Promise<T>): Promise<T> {
    return dbCall(this.deps, "materialize jobs", () => fn(this.sources));
  }

  /** Marks jobs whose process is gone as interrupted. */
  async sweep(): Promise<void> {
    const now = this.deps.clock.now();
    await this.db((s) => s.interruptStaleJobs(now - STALE_MS, now));
  }

  async get(tenant: string, id: string): Promise<JobRow> {
    // anything that is not a job id is simply unknown (and never reaches the database)
    if (!JOB_ID.test(id)) throw new AppError("not_found", `unknown job ${JSON.stringify(id.slice(0, 100))}`);
    await this.sweep();
    const job = await this.db((s) => s.getJob(tenant, id));
    if (!job) throw new AppError("not_found", `unknown job ${JSON.stringify(id)}`);
    return job;
  }

  async list(tenant: string): Promise<JobRow[]> {
    await this.sweep();
    return this.db((s) => s.listJobs(tenant, 100));
  }

  /** Creates a job and starts its process. 404 for an unknown source, 409 when the source has an active job. */
  async start(tenant: string, source: string, args: JobArgs): Promise<JobRow> {
    if (!(await this.db(() => loadSource(this.deps, tenant, source)))) throw new AppError("not_found", `unknown source ${JSON.stringify(source)} (declare it under \`sources:\` and register it)`);
    await this.sweep();
    const now = this.deps.clock.now();
    const job: JobRow = {
      id: `job_${randomBytes(9).toString("base64url")}`,
      tenant, source, status: "queued", args: { ...args }, progress: {}, result: null, error: null, created_at: now, updated_at: now,
    };
    if (!(await this.db((s) => s.createJob(job)))) throw new AppError("conflict", `source ${source} already has a queued or running job; cancel it or wait for it to end`);
    this.spawn(job, args);
    return job;
  }

  /** Starts a new job with the arguments of an interrupted, failed or cancelled one. */
  async resume(tenant: string, id: string): Promise<JobRow> {
    const old = await this.get(tenant, id);
    if (old.status === "queued" || old.status === "running" || old.status === "succeeded") throw new AppError("conflict", `job ${id} is ${old.status}; only an interrupted, failed or cancelled job can be resumed`);
    const { resumes: _r, ...args } = old.args as JobArgs;
    return this.start(tenant, old.source, { ...args, resumes: id });
  }

  /** Cancels a queued or running job (its process stops after the chunk it is storing). */
  async cancel(tenant: string, id: string): Promise<JobRow> {
    const job = await this.get(tenant, id);
    if (job.status !== "queued" && job.status !== "running") throw new AppError("conflict", `job ${id} is ${job.status}, not running`);
    const child = this.children.get(id);
    if (child) child.kill("SIGTERM");
    else await this.db((s) => s.updateJob(id, { status: "cancelled" }, this.deps.clock.now())); // its process is another server's or gone
    return { ...job, status: child ? job.status : "cancelled" };
  }

  private spawn(job: JobRow, args: JobArgs): void {
    const argv = ["materialize", job.source, "--tenant", job.tenant, "--job", job.id];
    if (args.start) argv.push("--start", args.start);
    if (args.end) argv.push("--end", args.end);
    if (args.incremental) argv.push("--incremental");
    if (args.chunk_rows) argv.push("--chunk-rows", String(args.chunk_rows));
    if (args.skip_invalid) {
      const dir = join(this.deps.config.DATA_DIR, "rejected");
      mkdirSync(dir, { recursive: true });
      argv.push(`--skip-invalid=${join(dir, `${job.id}.jsonl`)}`);
    }
    const env = { ...process.env, FEATURE_STORE_PARENT_PID: String(process.pid) };
    const child = Bun.spawn([...selfCommand(), ...argv], { env, stdin: "ignore", stdout: "ignore", stderr: "pipe" });
    this.children.set(job.id, child);
    void (async () => {
      const stderr = await new Response(child.stderr).text().catch(() => "");
      const code = await child.exited;
      this.children.delete(job.id);
      // a process that ended without recording an outcome (a crash, a bad configuration)
      const now = this.deps.clock.now();
      const row = await this.sources.getJob(job.tenant, job.id).catch(() => null);
      if (row && (row.status === "queued" || row.status === "running")) {
        const last = stderr.trim().split("\n").at(-1) ?? "";
        await this.sources.updateJob(job.id, { status: "failed", error: `the materialize process exited with status ${code}${last ? `: ${last.slice(0, 2000)}` : ""}` }, now).catch(() => {});
      }
    })().catch((err: unknown) => this.deps.log.warn({ err }, "materialize job watcher failed"));
  }
}
