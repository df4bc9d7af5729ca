import type { BulkLane } from "../../lane/pool.ts";
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import { parseTime } from "../../lib/time.ts";
import type { Deps } from "../../serving/deps.ts";
import { jobJson, JobRunner } from "../../sources/jobs.ts";
import type { AppEnv } from "../env.ts";
import { mount, parseBody, requireScope } from "../route.ts";
import { Name, Timestamp } from "../../schemas.ts";
import { problems, security } from "./common.ts";

const Time = Timestamp.refine((v) => parseTime(v) !== null, "expected an RFC 3339 timestamp");

export const MaterializeBody = z
  .strictObject({
    source: Name.openapi({ description: "a source registered with `sources:` in a definitions file", example: "user_daily" }),
    start: Time.optional().openapi({ description: "first event time to load (inclusive); default: no bound" }),
    end: Time.optional().openapi({ description: "load event times before this one; default: no bound" }),
    incremental: z.boolean().optional().openapi({ description: "start at the source's watermark (the greatest event time already loaded)" }),
    skip_invalid: z.boolean().optional().openapi({ description: "store the valid rows and write rejected ones to DATA_DIR/rejected/JOB.jsonl; default: stop at the first invalid row" }),
    chunk_rows: z.int().min(1).max(1_000_000).optional().openapi({ description: "rows per chunk (default: about 100,000 values a chunk)" }),
  })
  .refine((b) => b.start === undefined || b.end === undefined || (parseTime(b.end) ?? 0) > (parseTime(b.start) ?? 0), { message: "end must be after start", path: ["end"] })
  .openapi("MaterializeBody", { example: { source: "user_daily", start: "2024-01-01T00:00:00Z", end: "2024-02-01T00:00:00Z" } });

const Job = z
  .object({
    id: z.string(),
    source: Name,
    status: z.enum(["queued", "running", "succeeded", "failed", "cancelled", "interrupted"]).openapi({
      description: "`interrupted`: its process ended with the server (or died); resume it with POST .../resume",
    }),
    args: z.record(z.string(), z.unknown()).openapi({ description: "the arguments it was started with (`resumes`: the job it continues)" }),
    progress: z.record(z.string(), z.unknown()).openapi({ description: "rows_read, values_stored, identical_resends, rows_rejected, done, total, unit, rows_per_second" }),
    result: z.record(z.string(), z.unknown()).nullable().openapi({ description: "the summary when it succeeded: rows read, values stored, identical re-sends, rejected rows by reason, first rejected rows, watermark" }),
    error: z.string().nullable(),
    created_at: z.string(),
    updated_at: z.string(),
  })
  .openapi("MaterializeJob");
/** A job as GET answers it while it runs (the shapes of `progress` and `result` are the CLI summary's). */
const JOB_EXAMPLE = {
  id: "job_3q2b7x9k1m0p4r8s",
  source: "user_daily",
  status: "running" as const,
  args: { start: "2024-01-01T00:00:00.000Z", end: "2024-02-01T00:00:00.000Z" },
  progress: { rows_read: 200000, values_stored: 598400, identical_resends: 1600, rows_rejected: 0, done: 200000, total: 1000000, unit: "rows", rows_per_second: 41000 },
  result: null,
  error: null,
  created_at: "2024-02-01T03:00:00.000Z",
  updated_at: "2024-02-01T03:00:05.120Z",
};
const JobResponse = z.object({ job: Job }).openapi("MaterializeJobResponse", { example: { job: JOB_EXAMPLE } });
const JobList = z.object({ jobs: z.array(Job) }).openapi("MaterializeJobList", { example: { jobs: [JOB_EXAMPLE] } });
const IdParam = z.object({ id: z.string().max(64).openapi({ param: { name: "id", in: "path" }, example: "job_3q2b7x9k1m0p4r8s" }) });

const tags = ["materialize"];
export const startRoute = createRoute({
  method: "post",
  path: "/api/v1/materialize/jobs",
  operationId: "startMaterialization",
  tags,
  summary: "Start loading a source into history and the online store (admin)",
  description: "Runs `materialize` for one source in a separate process; 202 with the queued job. One job per source at a time (409).",
  security,
  request: { body: { required: true, content: { "application/json": { schema: MaterializeBody } } } },
  responses: {
    202: { description: "Started", content: { "application/json": { schema: JobResponse } } },
    ...problems(400, 404, 409, 413),
  },
});
export const listRoute = createRoute({
  method: "get",
  path: "/api/v1/materialize/jobs",
  operationId: "listMaterializations",
  tags,
  summary: "The tenant's materialization jobs, newest first (at most 100) (admin)",
  security,
  responses: { 200: { description: "Jobs", content: { "application/json": { schema: JobList } } }, ...problems() },
});
export const getRoute = createRoute({
  method: "get",
  path: "/api/v1/materialize/jobs/{id}",
  operationId: "getMaterialization",
  tags,
  summary: "A materialization job: status, progress, result (admin)",
  security,
  request: { params: IdParam },
  responses: { 200: { description: "The job", content: { "application/json": { schema: JobResponse } } }, ...problems(404) },
});
export const cancelRoute = createRoute({
  method: "post",
  path: "/api/v1/materialize/jobs/{id}/cancel",
  operationId: "cancelMaterialization",
  tags,
  summary: "Cancel a queued or running job (admin)",
  description: "Its process stops after the chunk it is storing; what is stored stays, and a resume continues from there. 409 when the job is not running.",
  security,
  request: { params: IdParam },
  responses: { 202: { description: "Cancelling", content: { "application/json": { schema: JobResponse } } }, ...problems(404, 409) },
});
export const resumeRoute = createRoute({
  method: "post",
  path: "/api/v1/materialize/jobs/{id}/resume",
  operationId: "resumeMaterialization",
  tags,
  summary: "Resume an interrupted, failed or cancelled job (admin)",
  description: "Starts a new job with the same arguments; it continues from the source's saved position, storing every row once. 409 when the job is running or succeeded, or the source has another active job.",
  security,
  request: { params: IdParam },
  responses: { 202: { description: "The new job", content: { "application/json": { schema: JobResponse } } }, ...problems(404, 409) },
});

/** Jobs' rows are written on a bulk-lane thread (`lane.sources`): never a wait for the write lock on this one. */
export function mountMaterialize(app: OpenAPIHono<AppEnv>, deps: Deps, lane: BulkLane): void {
  const jobs = new JobRunner(deps, lane.sources);
  mount(app, startRoute, async (c) => {
    const { tenant } = requireScope(c, "admin");
    const { source, ...args } = await parseBody(c, MaterializeBody);
    return c.json({ job: jobJson(await jobs.start(tenant, source, args)) }, 202);
  });
  mount(app, listRoute, async (c) => {
    const { tenant } = requireScope(c, "admin");
    return c.json({ jobs: (await jobs.list(tenant)).map(jobJson) }, 200);
  });
  mount(app, getRoute, async (c) => {
    const { tenant } = requireScope(c, "admin");
    return c.json({ job: jobJson(await jobs.get(tenant, c.req.param("id") ?? "")) }, 200);
  });
  mount(app, cancelRoute, async (c) => {
    const { tenant } = requireScope(c, "admin");
    return c.json({ job: jobJson(await jobs.cancel(tenant, c.req.param("id") ?? "")) }, 202);
  });
  mount(app, resumeRoute, async (c) => {
    const { tenant } = requireScope(c, "admin");
    return c.json({ job: jobJson(await jobs.resume(tenant, c.req.param("id") ?? "")) }, 202);
  });
}
