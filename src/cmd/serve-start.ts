/**
 * What `serve` does once it listens (cmd/serve.ts answers `GET /healthz` meanwhile): the logger,
 * the stores (opened, migrations checked or, embedded, applied, the registry and the key ring
 * loaded), the rate limiter, the change feed and the readiness loop; then the start line. The
 * HTTP app (Hono and every route, the OpenAPI registry, the bulk lane) is built right after:
 * nothing the liveness probe needs waits for it, and a request other than `GET /healthz` that
 * comes before it is built waits for it.
 */
import pkg from "../../package.json" with { type: "json" };
import { answerHealthz, HEALTHZ, isHealthz } from "../api/healthz.ts";
import type { ServerState } from "../api/routes/ops.ts";
import type { Config } from "../config.ts";
import { importInTurns, nextTurn, type Lifecycle } from "../lib/lifecycle.ts";
import { accessLogger, createLogger, type Logger } from "../log.ts";
import { followChanges } from "../serving/changes.ts";
import type { Deps } from "../serving/deps.ts";
import { checkReadiness } from "../serving/health.ts";
import { openRateLimiter, RateLimiter } from "../serving/rate-limit.ts";
import { WorkerWindowStore } from "../serving/supervisor-window.ts";
import type { WindowStore } from "../store/types.ts";
import { buildDeps, databaseLocation } from "./open-deps.ts";

/**
 * What the HTTP app imports, in groups of modules evaluated one per turn of the event loop before
 * app.ts (see importInTurns): together ~50 ms of CPU, which a request (a probe, the first
 * lookup) coming in meanwhile waited for; the largest group now is the schemas (~17 ms, zod's).
 */
const APP_MODULES = [
  () => import("@hono/zod-openapi"), // zod, its OpenAPI registry, hono
  () => import("../schemas.ts"),
  () => import("../catalog-schemas.ts"),
  () => import("../formats/encode.ts"), // Apache Arrow
  () => import("../formats/decode.ts"), // hyparquet, csv-parse
  () => import("../sources/read.ts"), // the Parquet codecs (hyparquet-compressors)
  () => import("../lane/pool.ts"),
];

/** A request answered before the stores and the logger were there (a `GET /healthz`): counted and logged once they are. */
export interface EarlyAnswer {
  id: string;
  method: string;
  route: string;
  status: number;
  seconds: number;
  /** when it was answered, ms since the epoch (the time of its access-log line) */
  at: number;
}

/** A request handler of Bun.serve. */
export type Fetch = (req: Request, server: Bun.Server<undefined>) => Response | Promise<Response>;

/** What {@link startServing} started. */
export interface Started {
  log: Logger;
  deps: Deps;
  /** Answers any request: the app's `fetch` once it is built (right after the start), `GET /healthz` meanwhile. */
  fetch: Fetch;
  /** Settles once the app is built (or failed to build): the server answers everything from then on. */
  built: Promise<unknown>;
}

/**
 * Starts what the server needs besides its socket (see the module's comment), adds each cleanup
 * to `lifecycle`, and counts and logs the `early` answers after the start line. `own`: the
 * settings of this process (one of N workers: its share, see serve.ts `workerShare`).
 * `counts`: the rate-limit counts of all N workers, when this process holds them (the
 * supervisor, worker 1; see supervisor-window.ts).
 */
export async function startServing(cfg: Config, own: Config, worker: string | undefined, state: ServerState, lifecycle: Lifecycle, url: string, early: EarlyAnswer[], counts?: WindowStore): Promise<Started> {
  await nextTurn(); // after this module's evaluation
  const log = worker === undefined ? createLogger(cfg.LOG_LEVEL, 1) : createLogger(cfg.LOG_LEVEL, 1).child({ worker: Number(worker) });
  // one of N workers admits (and opens) its share of what one process would (see workerShare)
  const deps = await buildDeps(own, { log, defaultMetrics: true, between: nextTurn });
  // each worker answers /metrics for itself: its series carry worker="N"
  if (worker !== undefined) deps.metrics.registry.setDefaultLabels({ worker });
  lifecycle.add("stores", () => deps.stores.close());
  const rateLimiter =
    counts !== undefined && cfg.RATE_LIMIT_PER_KEY > 0 && !cfg.REDIS_URL
      ? new RateLimiter({ limit: cfg.RATE_LIMIT_PER_KEY, windowMs: cfg.RATE_LIMIT_WINDOW_MS, shared: counts })
      : worker !== undefined && cfg.RATE_LIMIT_PER_KEY > 0 && !cfg.REDIS_URL && WorkerWindowStore.available()
      ? new RateLimiter({
          limit: cfg.RATE_LIMIT_PER_KEY,
          windowMs: cfg.RATE_LIMIT_WINDOW_MS,
          shared: new WorkerWindowStore(),
          sharedTimeoutMs: 250,
          onFallback: (err) =>
            err === undefined
              ? log.info("rate limiting: counts shared through the supervisor again")
              : log.warn({ err: err instanceof Error ? err.message : String(err) }, "rate limiting: the supervisor did not answer; counting in this worker (fail open)"),
        })
      : await openRateLimiter(cfg, log);
  lifecycle.add("rate limiter", () => rateLimiter.close());
  await nextTurn();

  // this thread answers online lookups: a short time slice (threads started later inherit it;
  // the bulk lane's ask for their own); its own turn, bun:ffi and libc loaded only here
  const { scheduleThread } = await import("./scheduling.ts");
  scheduleThread("serving", own, log);
  await nextTurn();

  followChanges(deps);
  // store_up is fresh for scrapes even when nothing polls /readyz
  const health = setInterval(() => void checkReadiness(deps, false), 5000);
  health.unref();
  lifecycle.add("health loop", () => clearInterval(health));

  log.info({ url, database: deps.stores.registry.name, database_location: databaseLocation(cfg), cache: deps.stores.online.name, version: pkg.version }, "feature-store serving");
  const access = accessLogger(log);
  for (const a of early.splice(0)) {
    deps.metrics.observeRequest(a.route, a.method, a.status, a.seconds);
    access(a.id, a.method, a.route, a.status, Math.round(a.seconds * 1e6) / 1000, a.at);
  }
  // the process metrics are not needed to answer: registered a second after start (or at the first scrape)
  setTimeout(() => void deps.metrics.collectDefaults(), 1000).unref();
  if ((await deps.stores.registry.listKeys()).length === 0) {
    log.warn("no API keys exist yet; create one with: feature-store keys create --tenant default --scopes admin");
  }

  let app: Fetch | undefined;
  let building: Promise<Fetch> | undefined;
  const build = async (): Promise<Fetch> => {
    await importInTurns(APP_MODULES);
    const [{ createApp }, { BulkLane, laneOptions }, { laneForms }] = await Promise.all([import("../app.ts"), import("../lane/pool.ts"), import("../api/routes/lane-forms.ts")]);
    await nextTurn();
    // Training queries and writes run on the bulk lane's threads; stopped after the HTTP drain.
    const lane = new BulkLane(deps, { ...laneOptions(own), ...laneForms });
    lifecycle.add("bulk lane", () => lane.close());
    const built = createApp(deps, state, pkg.version, { rateLimiter, lane });
    app = (req, server) => built.fetch(req, server);
    return app;
  };
  // Built right after start, not on the first request: /healthz has answered by now, and the
  // first online lookup must not pay the 30-40 ms of building the app (the serving thread is
  // sacred). A failure surfaces on the requests that wait for it.
  const built = new Promise<unknown>((resolve) =>
    setImmediate(() => {
      building ??= build();
      building.then(resolve, resolve);
    }),
  );
  return {
    log,
    deps,
    built,
    fetch: (req, server) => {
      if (app !== undefined) return app(req, server);
      if (isHealthz(req)) {
        // what the fast path does for /healthz (api/fast-online.ts), until the app is there
        return answerHealthz(req, state.draining, (id, seconds) => {
          deps.metrics.observeRequest(HEALTHZ, "GET", 200, seconds);
          access(id, "GET", HEALTHZ, 200, Math.round(seconds * 1e6) / 1000);
        });
      }
      building ??= build();
      return building.then((f) => f(req, server));
    },
  };
}
