/**
 * The bulk lane's work, as a worker thread runs it: decode and validate the raw request body,
 * run the serving function (point-in-time lookup, validation and storage of a write), render
 * the answer into bytes. Everything here costs CPU in proportion to the request, so none of it
 * runs on the thread that answers online lookups (except with BULK_WORKERS=0, when the serving
 * thread runs the same code itself).
 */
import { AppError, problemBody } from "../errors.ts";
import { decodeJson, validate, WriteBody } from "../schemas.ts";
import type { StatusCounts } from "../serving/batch.ts";
import { dbCall, type Deps } from "../serving/deps.ts";
import { registerCatalog } from "../serving/catalog.ts";
import { registerFeatures } from "../serving/register.ts";
import { prepareRows, putOnline, type ValidationDeps, type WriteGroup } from "../serving/write.ts";
import type { RowOutcome, Stores, ValueWrite } from "../store/types.ts";
import type { BatchJob, FromWorker, JobProblem, PackedRows, RegisterJob, SourceWriteJob, ToWorker, WriteJob, WriteOutcome } from "./protocol.ts";
import { openBatch, type BatchAnswer } from "./frame-jobs.ts";

/** What the lane's work needs: its own store connection (registry and offline roles) and registry snapshot. */
export type LaneDeps = Pick<Deps, "config" | "registry" | "log"> & {
  stores: Pick<Stores, "registry" | "offline">;
  /** the worker's own connection to an online store shared across processes (Redis): the worker offers a write's values itself */
  sharedOnline?: Stores["online"];
};

/** Values offered to the online store per call after a bulk write (the serving thread also yields between slices). */
export const CACHE_SLICE = 1000;

/**
 * Rewrites a decoded batch body in another accepted form (a `feature_service` for
 * `feature_names`: api/routes/service-forms.ts) into the contract's form; the body unchanged
 * otherwise. Given by the layer that knows the forms (the worker's entry, the app).
 */
export type NormaliseBatch = (deps: Pick<Deps, "registry">, tenant: string, raw: unknown) => unknown;

/**
 * Accepted forms of a write body besides the native one (`write`), by name: each validates a
 * decoded body into the groups to store in one transaction (400 when invalid). Given by the
 * layer that knows the forms (Feast's `write-to-online-store` and `push`: api/routes/feast).
 */
export type WriteForms = Readonly<Record<string, (deps: ValidationDeps, tenant: string, raw: unknown) => WriteGroup[]>>;

/** The native write body (POST /api/v1/features/write) as the one group to store. */
function nativeWrite(deps: ValidationDeps, tenant: string, raw: unknown, now: number): WriteGroup[] {
  const body = validate(WriteBody, raw);
  const { rows, defs } = prepareRows(deps, tenant, body.entity_type, body.records, now);
  return [{ tenant, entityType: body.entity_type, rows, defs }];
}

/** Column form of accepted rows and the sequence each got (see {@link PackedRows}). */
export function packRows(rows: readonly ValueWrite[], outcomes: readonly RowOutcome[]): PackedRows {
  const n = rows.length;
  const featureIds = new Float64Array(n);
  const eventTimes = new Float64Array(n);
  const seqs = new Float64Array(n);
  const offsets = new Uint32Array(n + 1);
  const entityIds: string[] = new Array(n);
  let size = 0;
  for (let i = 0; i < n; i++) size += (rows[i] as ValueWrite).value.byteLength;
  const bytes = new Uint8Array(size);
  let at = 0;
  for (let i = 0; i < n; i++) {
    const w = rows[i] as ValueWrite;
    featureIds[i] = w.feature_id;
    entityIds[i] = w.entity_id;
    eventTimes[i] = w.event_time;
    seqs[i] = (outcomes[i] as RowOutcome).seq;
    offsets[i] = at;
    bytes.set(w.value, at);
    at += w.value.byteLength;
  }
  offsets[n] = at;
  return { featureIds, entityIds, eventTimes, seqs, offsets, bytes };
}

/** Rows [from, to) of packed rows and their sequences, each value copied out (a cached value must not pin the whole buffer). */
export function unpackRows(p: PackedRows, from: number, to: number): { rows: Pick<ValueWrite, "feature_id" | "entity_id" | "event_time" | "value">[]; seqs: { seq: number }[] } {
  const rows: Pick<ValueWrite, "feature_id" | "entity_id" | "event_time" | "value">[] = new Array(Math.max(0, to - from));
  const seqs: { seq: number }[] = new Array(rows.length);
  for (let i = from; i < to; i++) {
    rows[i - from] = {
      feature_id: p.featureIds[i] as number,
      entity_id: p.entityIds[i] as string,
      event_time: p.eventTimes[i] as number,
      value: p.bytes.slice(p.offsets[i] as number, p.offsets[i + 1] as number),
    };
    seqs[i - from] = { seq: p.seqs[i] as number };
  }
  return { rows, seqs };
}

/** The problem to report for a failure; anything but an AppError is logged here and reported as `internal`. */
function toProblem(err: unknown, deps: LaneDeps, requestId?: string): JobProblem {
  if (err instanceof AppError) return { code: err.code, message: err.message, errors: err.errors };
  deps.log.error({ err, request_id: requestId }, "bulk lane job failed");
  return { code: "internal", message: "an internal error occurred; quote the request id when reporting it" };
}

interface Running {
  cancelled: boolean;
  credits: number;
  wake: () => void;
}

/** Runs jobs as their messages arrive and posts what they produce (one per worker thread). */
export class JobRunner {
  private readonly jobs = new Map<number, Running>();
  private gen = -1;

  constructor(
    private readonly deps: LaneDeps,
    private readonly post: (m: FromWorker, transfer?: Bun.Transferable[]) => void,
    private readonly opts: { reloadRegistry: boolean; chunkKeys?: number | undefined; normaliseBatch?: NormaliseBatch | undefined; writeForms?: WriteForms | undefined },
  ) {}

  /** Jobs running now. */
  get running(): number {
    return this.jobs.size;
  }

  handle(m: ToWorker): void {
    switch (m.t) {
      case "batch":
        void this.batch(m);
        break;
      case "write":
        void this.write(m);
        break;
      case "register":
        void this.register(m);
        break;
      case "sources":
        void this.sourceWrite(m);
        break;
      case "pull": {
        const j = this.jobs.get(m.id);
        if (j) {
          j.credits++;
          j.wake();
        }
        break;
      }
      case "cancel": {
        const j = this.jobs.get(m.id);
        if (j) {
          j.cancelled = true;
          j.wake();
        }
        break;
      }
      default:
        break;
    }
  }

  /** Reloads the registry when the serving thread's is newer than the one loaded here. */
  private async fresh(gen: number): Promise<void> {
    if (!this.opts.reloadRegistry || gen === this.gen) return;
    await dbCall(this.deps, "registry reload", () => this.deps.registry.reload());
    this.gen = gen;
  }

  private start(id: number): Running {
    const job: Running = { cancelled: false, credits: 0, wake: () => {} };
    this.jobs.set(id, job);
    return job;
  }

  /** Resolves when the serving thread asked for the next chunk (true) or cancelled (false). */
  private credit(job: Running): Promise<boolean> {
    if (job.cancelled) return Promise.resolve(false);
    if (job.credits > 0) {
      job.credits--;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      job.wake = () => {
        job.wake = () => {};
        if (job.cancelled) return resolve(false);
        job.credits--;
        resolve(true);
      };
    });
  }

  private sendChunk(id: number, contentType: string, bytes: Uint8Array, counts: StatusCounts | undefined, last: boolean): void {
    this.post({ t: "chunk", id, contentType, bytes, counts, last }, [bytes.buffer as ArrayBuffer]);
  }

  private async batch(m: BatchJob): Promise<void> {
    const job = this.start(m.id);
    let answer: BatchAnswer | undefined;
    let started = false;
    try {
      await this.fresh(m.gen);
      const normalise = this.opts.normaliseBatch;
      const raw = { accept: m.accept, contentType: m.contentType, query: m.query, body: m.body };
      answer = await openBatch(this.deps, m.tenant, raw, normalise ? (json) => normalise(this.deps, m.tenant, json) : undefined, this.opts.chunkKeys);
      for await (const c of answer.chunks) {
        if (started && !(await this.credit(job))) {
          await answer.chunks.return(undefined);
          return;
        }
        this.sendChunk(m.id, answer.contentType, c.bytes, c.counts, false);
        started = true;
      }
      if (started && !(await this.credit(job))) return;
      const end = answer.end();
      this.sendChunk(m.id, answer.contentType, end.bytes, end.counts, true);
    } catch (err) {
      const problem = toProblem(err, this.deps, m.requestId);
      const tail = started ? answer?.failure(problemBody(problem.code, problem.message, m.requestId, problem.errors)) : undefined;
      if (tail === undefined) this.post({ t: "failed", id: m.id, problem });
      else this.sendChunk(m.id, answer?.contentType ?? "", tail, undefined, true);
    } finally {
      this.jobs.delete(m.id);
    }
  }

  /** Runs a job answered by one message (or `failed` with its problem). */
  private async once(id: number, work: () => Promise<{ answer: FromWorker; transfer?: ArrayBuffer[] }>): Promise<void> {
    this.start(id);
    try {
      const { answer, transfer } = await work();
      this.post(answer, transfer);
    } catch (err) {
      this.post({ t: "failed", id, problem: toProblem(err, this.deps) });
    } finally {
      this.jobs.delete(id);
    }
  }

  private write(m: WriteJob): Promise<void> {
    return this.once(m.id, async () => {
      await this.fresh(m.gen);
      // The serving thread's clock at receipt stands for "now" (default event time, future-skew bound).
      const deps = { ...this.deps, clock: { now: () => m.now } };
      const raw = decodeJson(m.body);
      const form = m.form === "write" ? undefined : this.opts.writeForms?.[m.form];
      if (m.form !== "write" && form === undefined) throw new Error(`no write form ${JSON.stringify(m.form)} in this lane`);
      const groups = form ? form(deps, m.tenant, raw) : nativeWrite(deps, m.tenant, raw, m.now);
      // The offline half of storeValues (serving/write.ts), every group in one transaction; the serving thread does the online half.
      const rows = groups.length === 1 ? (groups[0] as WriteGroup).rows : groups.flatMap((g) => g.rows);
      const outcomes = rows.length === 0 ? [] : await dbCall(this.deps, "write", () => this.deps.stores.offline.writeValues(rows));
      const valuesChanges = this.deps.stores.registry.takeOwnChanges?.("values") ?? [];
      const shared = this.deps.sharedOnline;
      if (shared !== undefined) {
        // a shared online store (Redis): offered here, on this thread's own connection, so the
        // serving thread's connection carries online reads only
        let failed = 0;
        let at = 0;
        for (const g of groups) {
          const seqs = outcomes.slice(at, at + g.rows.length);
          at += g.rows.length;
          for (let from = 0; from < g.rows.length; from += CACHE_SLICE) {
            const to = Math.min(g.rows.length, from + CACHE_SLICE);
            failed += await putOnline(shared, this.deps.log, { tenant: g.tenant, entityType: g.entityType, rows: g.rows.slice(from, to), defs: g.defs.slice(from, to) }, seqs.slice(from, to));
          }
        }
        return { answer: { t: "written", id: m.id, outcome: { written: rows.length, parts: [], ttls: [], valuesChanges, offeredFailures: failed } } };
      }
      const ttls = new Map<number, number | null>();
      const parts: WriteOutcome["parts"] = [];
      const transfer: ArrayBuffer[] = [];
      let at = 0;
      for (const g of groups) {
        for (const d of g.defs) ttls.set(d.id, d.ttlMs);
        const packed = packRows(g.rows, outcomes.slice(at, at + g.rows.length));
        at += g.rows.length;
        parts.push({ entityType: g.entityType, rows: packed });
        transfer.push(...([packed.featureIds.buffer, packed.eventTimes.buffer, packed.seqs.buffer, packed.offsets.buffer, packed.bytes.buffer] as ArrayBuffer[]));
      }
      const outcome: WriteOutcome = { written: rows.length, parts, ttls: [...ttls], valuesChanges };
      return { answer: { t: "written", id: m.id, outcome }, transfer };
    });
  }

  /** A registration: its store transaction (and any wait for the write lock) happens on this thread. */
  private register(m: RegisterJob): Promise<void> {
    return this.once(m.id, async () => {
      await this.fresh(m.gen);
      const deps = { ...this.deps, clock: { now: () => m.now } };
      const { outcomes, ok } = m.what === "features" ? await registerFeatures(deps, m.tenant, m.items) : await registerCatalog(deps, m.tenant, m.features, m.groups);
      return { answer: { t: "registered", id: m.id, outcomes, ok, definitionsChanges: this.deps.stores.registry.takeOwnChanges?.("definitions") ?? [] } };
    });
  }

  /** A write of the source store (a materialize job's row), so the serving thread never waits on the write lock for it. */
  private sourceWrite(m: SourceWriteJob): Promise<void> {
    return this.once(m.id, async () => {
      const store = this.deps.stores.registry.sources;
      const call = store[m.op] as (...args: unknown[]) => Promise<unknown>;
      const result = await dbCall(this.deps, "materialize jobs", () => call.apply(store, m.args));
      return { answer: { t: "done", id: m.id, result } };
    });
  }
}
