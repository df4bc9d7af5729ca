/**
 * The bulk lane, as the serving thread sees it: training queries (point-in-time batches) and
 * writes run on a small pool of worker threads with their own store connections, never on the
 * thread that answers online lookups. The serving thread only admits a job (BulkAdmission),
 * hands the raw body over, streams the rendered bytes back as they come, and, after a write,
 * offers the newly stored values to its online cache in small slices.
 *
 * With `workers: 0` the same jobs run on the serving thread itself (the behaviour before the
 * lane existed; for tools and tests that want one thread).
 */
import { join } from "node:path";
import type { Registry } from "prom-client";
import { BulkAdmission } from "./admission.ts";
import type { Config } from "../config.ts";
import { AppError } from "../errors.ts";
import type { RegistrySnapshot } from "../registry/snapshot.ts";
import { dbCall, type Deps } from "../serving/deps.ts";
import { offerToOnline } from "../serving/write.ts";
import { CACHE_SLICE, JobRunner, unpackRows, type NormaliseBatch, type WriteForms } from "./jobs.ts";
import type { FromWorker, JobProblem, RegisterWhat, SourceWriteOp, ToWorker } from "./protocol.ts";
import type { SourceStore } from "../store/types.ts";
import type { CatalogOutcome } from "../serving/catalog.ts";
import type { RegisterOutcome } from "../serving/register.ts";

/** Settings of the lane. */
export interface LaneOptions {
  /** worker threads; 0: run jobs on the serving thread */
  workers: number;
  /** jobs running at once (all workers together); 0: no limit */
  maxInFlight: number;
  /** jobs waiting for a slot at most */
  maxQueue: number;
  /** longest wait for a slot, ms */
  queueTimeoutMs: number;
  /** a streamed answer nobody reads for this long is cancelled, ms */
  stallTimeoutMs: number;
  /** keys per chunk of a batch (default: serving/batch.ts CHUNK_KEYS) */
  chunkKeys?: number;
  /** other accepted forms of a batch body, for jobs run on this thread (`workers: 0`); the worker's entry has its own */
  normaliseBatch?: NormaliseBatch;
  /** other accepted forms of a write body (Feast's), likewise */
  writeForms?: WriteForms;
}

/**
 * The routes the bulk lane answers (everything else is the online lane): training queries,
 * writes (ours and Feast's) and registrations, everything that writes to the store or costs
 * CPU in proportion to the request.
 */
const BULK_ROUTES = new Set([
  "/api/v1/features/batch",
  "/api/v1/features/write",
  "/api/v1/features/register",
  "/api/v1/feature-views/register",
  "/api/v1/feature-services/register",
  "/api/v1/feast/write-to-online-store",
  "/api/v1/feast/push",
]);

/** Whether a request is the bulk lane's (admitted by its admission control, not the online lane's). */
export function isBulkRoute(method: string, path: string): boolean {
  return method === "POST" && BULK_ROUTES.has(path);
}

/** Lane settings from the configuration. */
export function laneOptions(cfg: Config): LaneOptions {
  return {
    workers: cfg.BULK_WORKERS,
    maxInFlight: cfg.BULK_MAX_IN_FLIGHT,
    maxQueue: cfg.BULK_MAX_QUEUE,
    queueTimeoutMs: cfg.BULK_QUEUE_TIMEOUT_MS,
    stallTimeoutMs: cfg.REQUEST_TIMEOUT_MS > 0 ? cfg.REQUEST_TIMEOUT_MS : 30_000,
  };
}


/** Where the worker's code is: its entry (src/cmd/lane-worker.ts) from source, an embedded entrypoint in the binary. */
function workerUrl(): string {
  // `bun build --compile` embeds extra entrypoints under /$bunfs/root/, relative to the common
  // source root (src/): src/cmd/lane-worker.ts becomes /$bunfs/root/cmd/lane-worker.js.
  if (Bun.main.includes("$bunfs")) return join(Bun.main, "..", "cmd", "lane-worker.js");
  return new URL("../cmd/lane-worker.ts", import.meta.url).href;
}

/** One thread of the pool (or the serving thread itself, with `workers: 0`). */
interface Slot {
  /** the thread (none: the serving thread itself) */
  worker?: Worker;
  send(m: ToWorker, transfer?: Bun.Transferable[]): void;
  running: number;
  ready: Promise<void>;
  stop(): Promise<void>;
}

interface Job {
  id: number;
  slot: Slot;
  end: () => void;
}

interface Pending {
  onMessage(m: FromWorker): void;
  onLost(problem: JobProblem): void;
  slot: Slot;
}

/** A batch request as the serving thread hands it to the lane: its headers, query and (unread) body. */
export interface BatchRequestParts {
  tenant: string;
  accept: string | undefined;
  contentType: string | undefined;
  /** query parameters, each with all its values */
  query: Record<string, string[]>;
  requestId: string;
  readBody: () => Promise<ArrayBuffer>;
}

/** Hands a failure over as the AppError the HTTP layer renders. */
function appError(p: JobProblem): AppError {
  if (p.code === "internal") return new AppError("internal", p.message);
  return new AppError(p.code, p.message, { errors: p.errors });
}

/** The bulk lane of one process. */
export class BulkLane {
  readonly admission: BulkAdmission;
  private readonly slots: Slot[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private gen = 0;
  private seen: RegistrySnapshot;
  private closed = false;

  constructor(
    private readonly deps: Deps,
    private readonly options: LaneOptions,
    registry: Registry = deps.metrics.registry,
  ) {
    this.admission = new BulkAdmission({ maxInFlight: options.maxInFlight, maxQueue: options.maxQueue, queueTimeoutMs: options.queueTimeoutMs }, registry);
    this.seen = deps.registry.current;
  }

  /** The lane's live worker threads (none with `workers: 0`), for operations and tests. */
  get threads(): Worker[] {
    return this.slots.flatMap((s) => (s.worker ? [s.worker] : []));
  }

  /** Registry generation to send with a job: bumped whenever the serving thread's snapshot changed. */
  private generation(): number {
    if (this.deps.registry.current !== this.seen) {
      this.seen = this.deps.registry.current;
      this.gen++;
    }
    return this.gen;
  }

  /** The least busy thread; threads start on first use. */
  private slot(): Slot {
    if (this.closed) throw new AppError("unavailable", "the server is shutting down; retry on another instance");
    const want = Math.max(1, this.options.workers);
    if (this.slots.length < want && this.slots.every((s) => s.running > 0)) this.slots.push(this.options.workers === 0 ? this.inline() : this.spawn());
    let best = this.slots[0] as Slot;
    for (const s of this.slots) if (s.running < best.running) best = s;
    return best;
  }

  private inline(): Slot {
    const runner = new JobRunner(this.deps, (m) => queueMicrotask(() => this.dispatch(m)), {
      reloadRegistry: false,
      chunkKeys: this.options.chunkKeys,
      normaliseBatch: this.options.normaliseBatch,
      writeForms: this.options.writeForms,
    });
    return { send: (m) => runner.handle(m), running: 0, ready: Promise.resolve(), stop: async () => {} };
  }

  private spawn(): Slot {
    const worker = new Worker(workerUrl());
    worker.unref(); // an idle lane never keeps the process alive; `close()` stops it on shutdown
    let fail: (err: Error) => void = () => {};
    let ok: () => void = () => {};
    const ready = new Promise<void>((resolve, reject) => {
      ok = resolve;
      fail = reject;
    });
    ready.catch(() => {});
    const slot: Slot = {
      worker,
      send: (m, transfer) => worker.postMessage(m, transfer ?? []),
      running: 0,
      ready,
      stop: async () => {
        worker.postMessage({ t: "close" } satisfies ToWorker);
        const exited = new Promise<void>((r) => worker.addEventListener("close", () => r()));
        const timer = setTimeout(() => worker.terminate(), 1000);
        await exited;
        clearTimeout(timer);
      },
    };
    let gone = false;
    const lost = (why: string) => {
      if (gone) return;
      gone = true;
      this.deps.log.error({ reason: why }, "bulk lane worker stopped");
      worker.terminate();
      fail(new Error(why));
      const i = this.slots.indexOf(slot);
      if (i >= 0) this.slots.splice(i, 1);
      for (const [id, p] of this.pending) {
        if (p.slot !== slot) continue;
        this.pending.delete(id);
        // A thread that dies under a job is a fault of this server, not of the request nor the store.
        p.onLost({ code: "internal", message: "the bulk-lane thread running this request stopped unexpectedly (it has been replaced); a write may or may not have been stored: re-sending it is safe" });
      }
    };
    worker.addEventListener("message", (e: MessageEvent<FromWorker>) => {
      const m = e.data;
      if (m.t === "ready") ok();
      else if (m.t === "init_failed") {
        this.deps.log.error({ reason: m.message }, "bulk lane worker could not open the store");
        lost(m.message);
      } else this.dispatch(m);
    });
    worker.addEventListener("error", (e) => lost(e.message));
    worker.addEventListener("close", () => {
      if (!this.closed) lost("exited");
    });
    // Each worker runs at most its share of the lane's jobs at once: a PostgreSQL pool of that size is enough.
    const cfg = this.deps.config;
    const share = this.options.maxInFlight > 0 ? Math.ceil(this.options.maxInFlight / Math.max(1, this.options.workers)) : cfg.POSTGRES_POOL_SIZE;
    const config = { ...cfg, POSTGRES_POOL_SIZE: Math.max(1, Math.min(cfg.POSTGRES_POOL_SIZE, share)) };
    worker.postMessage({ t: "init", config, changeOrigin: this.deps.stores.registry.changeOrigin, ownChangeLedger: this.deps.stores.registry.ownChangeLedger, chunkKeys: this.options.chunkKeys } satisfies ToWorker);
    return slot;
  }

  private dispatch(m: FromWorker): void {
    if (m.t === "ready" || m.t === "init_failed") return;
    this.pending.get(m.id)?.onMessage(m);
  }

  /** Registers a job on the least busy thread; `handlers` get its messages until `end()`. */
  private open(handlers: Omit<Pending, "slot">): Job {
    const slot = this.slot();
    slot.running++;
    const id = this.nextId++;
    this.pending.set(id, { ...handlers, slot });
    const end = () => {
      if (this.pending.delete(id)) slot.running--;
    };
    return { id, slot, end };
  }

  /** Sends a job's message once its thread is ready (503 when it could not start). */
  private async send(job: Job, make: (gen: number) => ToWorker, transfer: Bun.Transferable[]): Promise<void> {
    try {
      await job.slot.ready;
    } catch {
      throw new AppError("unavailable", "the bulk lane could not open the store; try again shortly");
    }
    job.slot.send(make(this.generation()), transfer);
  }

  /**
   * A point-in-time batch. Admits it (503 when the lane is full), then reads the body, and
   * resolves once the first chunk is ready (a 400/404/503 before any output is a plain problem);
   * the rest streams as the client reads, one chunk computed ahead.
   */
  async batch(req: BatchRequestParts): Promise<{ contentType: string; body: ReadableStream<Uint8Array> }> {
    const release = await this.admission.admit();
    const queue: (FromWorker & { t: "chunk" })[] = [];
    let failure: AppError | undefined;
    let wake: () => void = () => {};
    const arrived = () => new Promise<void>((r) => (wake = r));
    let job: Job | undefined;
    const finish = () => {
      job?.end();
      release();
    };
    try {
      const body = new Uint8Array(await req.readBody());
      job = this.open({
        onMessage: (m) => {
          if (m.t === "chunk") {
            if (m.counts) for (const [status, n] of Object.entries(m.counts)) if (n > 0) this.deps.metrics.lookups.inc({ status }, n);
            queue.push(m);
          } else if (m.t === "failed") failure = appError(m.problem);
          wake();
        },
        onLost: (p) => {
          failure = appError(p);
          wake();
        },
      });
      const id = job.id;
      await this.send(job, (gen) => ({ t: "batch", id, tenant: req.tenant, gen, body, accept: req.accept, contentType: req.contentType, query: req.query, requestId: req.requestId }), [body.buffer]);
      while (queue.length === 0 && failure === undefined) await arrived();
    } catch (err) {
      finish();
      throw err;
    }
    if (queue.length === 0) {
      finish();
      throw failure;
    }
    const running = job;
    const contentType = (queue[0] as FromWorker & { t: "chunk" }).contentType;
    let stall: ReturnType<typeof setTimeout> | undefined;
    const cancel = () => {
      clearTimeout(stall);
      running.slot.send({ t: "cancel", id: running.id });
      finish();
    };
    const watch = (ctrl: ReadableStreamDefaultController<Uint8Array>) => {
      clearTimeout(stall);
      stall = setTimeout(() => {
        cancel();
        ctrl.error(new Error("the client stopped reading the answer"));
      }, this.options.stallTimeoutMs);
      stall.unref?.();
    };
    const body = new ReadableStream<Uint8Array>({
      start: (ctrl) => watch(ctrl),
      pull: async (ctrl) => {
        clearTimeout(stall);
        while (queue.length === 0 && failure === undefined) await arrived();
        const m = queue.shift();
        if (m === undefined) {
          finish();
          // The answer already started: cutting the connection is the only honest end.
          ctrl.error(failure);
          return;
        }
        if (m.bytes.byteLength > 0) ctrl.enqueue(m.bytes);
        if (m.last) {
          finish();
          ctrl.close();
          return;
        }
        running.slot.send({ t: "pull", id: running.id });
        watch(ctrl);
      },
      cancel,
    });
    return { contentType, body };
  }

  /**
   * Admits a job, reads its body, runs it on the least busy thread and resolves with its answer
   * (the message `pick` accepts); a failure it reports rejects with its problem.
   */
  private async run<T>(
    readBody: () => Promise<ArrayBuffer>,
    make: (id: number, gen: number, body: Uint8Array) => ToWorker,
    pick: (m: FromWorker) => T | undefined,
    admit = true,
  ): Promise<T> {
    const release = admit ? await this.admission.admit() : () => {};
    let job: Job | undefined;
    try {
      const body = new Uint8Array(await readBody());
      let settle: { resolve: (o: T) => void; reject: (e: AppError) => void } | undefined;
      const result = new Promise<T>((resolve, reject) => (settle = { resolve, reject }));
      // awaited below; a worker lost before `send` returns rejects it while nobody waits yet
      result.catch(() => {});
      job = this.open({
        onMessage: (m) => {
          if (m.t === "failed") return settle?.reject(appError(m.problem));
          const answer = pick(m);
          if (answer !== undefined) settle?.resolve(answer);
        },
        onLost: (p) => settle?.reject(appError(p)),
      });
      const id = job.id;
      await this.send(job, (gen) => make(id, gen, body), [body.buffer]);
      return await result;
    } finally {
      job?.end();
      release();
    }
  }

  /**
   * A write: admitted, validated and stored in the lane; then the newly stored values are
   * offered to the online cache (compare-and-set) here, a slice per event-loop turn. `form` is
   * the body's form (`write`, or one of the lane's `writeForms`). Returns the number of values
   * accepted.
   */
  async write(req: { tenant: string; readBody: () => Promise<ArrayBuffer>; form?: string }): Promise<number> {
    const now = this.deps.clock.now();
    const form = req.form ?? "write";
    const outcome = await this.run(
      req.readBody,
      (id, gen, body) => ({ t: "write", id, tenant: req.tenant, gen, body, now, form }),
      (m) => (m.t === "written" ? m.outcome : undefined),
    );
    const { parts, ttls, valuesChanges } = outcome;
    this.deps.stores.registry.adoptOwnChanges?.("values", valuesChanges);
    if (outcome.written > 0) this.deps.metrics.valuesWritten.inc(outcome.written);
    if ((outcome.offeredFailures ?? 0) > 0) this.deps.metrics.cacheRequests.inc({ result: "error" }, outcome.offeredFailures);
    // The online half of storeValues (serving/write.ts): every accepted row, re-sends included.
    const ttl = new Map(ttls);
    let turns = 0;
    for (const { entityType, rows } of parts) {
      const n = rows.entityIds.length;
      for (let from = 0; from < n; from += CACHE_SLICE) {
        if (turns++ > 0) await new Promise<void>((r) => setImmediate(r));
        const slice = unpackRows(rows, from, Math.min(n, from + CACHE_SLICE));
        const defs = slice.rows.map((r) => ({ ttlMs: ttl.get(r.feature_id) ?? null }));
        await offerToOnline(this.deps, { tenant: req.tenant, entityType, rows: slice.rows, defs }, slice.seqs);
      }
    }
    return outcome.written;
  }

  /**
   * A registration (features, or views and services), already schema-valid: admitted and run
   * in the lane, so a wait for the database's write lock (a large write committing) holds a
   * lane thread, never this one. This thread's registry snapshot is refreshed before it
   * resolves (a feature registered is served at once).
   */
  async register(
    tenant: string,
    what: RegisterWhat,
  ): Promise<{ outcomes: (RegisterOutcome | CatalogOutcome)[]; ok: boolean }> {
    const now = this.deps.clock.now();
    const done = await this.run(
      async () => new ArrayBuffer(0),
      (id, gen) => ({ t: "register", id, tenant, gen, now, ...what }),
      (m) => (m.t === "registered" ? m : undefined),
    );
    this.deps.stores.registry.adoptOwnChanges?.("definitions", done.definitionsChanges);
    const changed = done.ok && done.outcomes.some((o) => o.status === "new" || o.status === "updated");
    // Inline (`workers: 0`) the job reloaded this thread's snapshot already.
    if (changed && this.options.workers > 0) await dbCall(this.deps, "registry reload", () => this.deps.registry.reload(tenant));
    return { outcomes: done.outcomes, ok: done.ok };
  }

  /**
   * The source store (materialize jobs) as the serving thread uses it: reads on this thread's
   * connection (a reader never waits for a writer in WAL mode), writes (a job's row created,
   * updated, swept) on a lane thread, outside the lane's admission (one small statement each).
   */
  get sources(): SourceStore {
    const own = this.deps.stores.registry.sources;
    const write =
      <K extends SourceWriteOp>(op: K) =>
      (...args: Parameters<SourceStore[K]>) =>
        this.run(
          async () => new ArrayBuffer(0),
          (id) => ({ t: "sources", id, op, args }),
          (m) => (m.t === "done" ? { result: m.result } : undefined),
          false,
        ).then((r) => r.result as Awaited<ReturnType<SourceStore[K]>>);
    return {
      putSources: (...a) => own.putSources(...a),
      listSources: (...a) => own.listSources(...a),
      getSourceState: (...a) => own.getSourceState(...a),
      putSourceState: (...a) => own.putSourceState(...a),
      getJob: (...a) => own.getJob(...a),
      listJobs: (...a) => own.listJobs(...a),
      createJob: write("createJob"),
      updateJob: write("updateJob"),
      interruptStaleJobs: write("interruptStaleJobs"),
    };
  }

  /** Stops the threads (jobs still running are cut: the HTTP drain has had its time by then). */
  async close(): Promise<void> {
    this.closed = true;
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      p.onLost({ code: "unavailable", message: "the server is shutting down; retry on another instance" });
    }
    await Promise.all(this.slots.splice(0).map((s) => s.stop()));
  }
}
