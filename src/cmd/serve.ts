import { createApp, type ServerState } from "../app.ts";
import { Lifecycle } from "../lib/lifecycle.ts";
import { createLogger } from "../log.ts";
import pkg from "../../package.json" with { type: "json" };
import { followChanges } from "../serving/changes.ts";
import { checkReadiness } from "../serving/health.ts";
import { openRateLimiter } from "../serving/rate-limit.ts";
import { buildDeps, config, parseFlags, type Command } from "./common.ts";

export const command: Command = {
  summary: "run the HTTP API",
  help: `Usage: feature-store serve [--port N] [--host H]

Runs the HTTP API (default 0.0.0.0:8000; env PORT, HOST). With no POSTGRES_URL it uses the
embedded SQLite database under DATA_DIR (migrated automatically); with no REDIS_URL an
in-process online cache. On SIGTERM/SIGINT /readyz turns 503, new connections stop, in-flight
requests finish (at most SHUTDOWN_TIMEOUT seconds), then the process exits 0.

Options:
  --port N   port to listen on (env PORT, default 8000)
  --host H   address to bind (env HOST, default 0.0.0.0)
  -h, --help show this help`,
  async run(argv) {
    const { values } = parseFlags(argv, { port: { type: "string" }, host: { type: "string" } });
    const cfg = config({ PORT: values.port, HOST: values.host });
    const log = createLogger(cfg.LOG_LEVEL, 1);
    const deps = await buildDeps(cfg, { log, defaultMetrics: true });
    const lifecycle = new Lifecycle();
    lifecycle.add("database", () => deps.db.close());
    lifecycle.add("cache", () => deps.cache.close());
    const rateLimiter = await openRateLimiter(cfg, log);
    lifecycle.add("rate limiter", () => rateLimiter.close());

    followChanges(deps);
    // store_up is fresh for scrapes even when nothing polls /readyz
    const health = setInterval(() => void checkReadiness(deps, false), 5000);
    health.unref();
    lifecycle.add("health loop", () => clearInterval(health));

    const state: ServerState = { draining: false };
    const app = createApp(deps, state, pkg.version, { rateLimiter });
    const server = Bun.serve({
      port: cfg.PORT,
      hostname: cfg.HOST,
      fetch: app.fetch,
      // The app enforces BODY_LIMIT_BYTES itself, with a 413 problem+json: by Content-Length
      // before reading a byte, and by counting a chunked body as it streams. A lower limit here
      // would make Bun answer a bare 413 (no body) first, so Bun's own limit is effectively off.
      maxRequestBodySize: Number.MAX_SAFE_INTEGER,
      development: false,
    });
    log.info({ url: server.url.href, database: deps.db.kind, cache: deps.cache.kind, version: pkg.version }, "feature-store serving");
    // the process metrics are not needed to answer: registered a second after start (or at the first scrape)
    setTimeout(() => deps.metrics.collectDefaults(), 1000).unref();
    if ((await deps.db.listKeys()).length === 0) {
      log.warn("no API keys exist yet; create one with: feature-store keys create --tenant default --scopes admin");
    }

    await new Promise<void>((resolve) => {
      lifecycle.onSignal((signal) => {
        state.draining = true;
        log.info({ signal }, "draining");
        void (async () => {
          if (cfg.SHUTDOWN_DELAY > 0) await Bun.sleep(cfg.SHUTDOWN_DELAY * 1000);
          const deadline = cfg.SHUTDOWN_TIMEOUT * 1000;
          let timer: ReturnType<typeof setTimeout> | undefined;
          const drained = await Promise.race([
            server.stop(false).then(() => true),
            new Promise<boolean>((r) => {
              timer = setTimeout(() => r(false), deadline);
            }),
          ]);
          clearTimeout(timer);
          if (!drained) {
            log.warn({ timeout_s: cfg.SHUTDOWN_TIMEOUT }, "drain deadline reached; closing remaining connections");
            await server.stop(true);
          }
          await lifecycle.stop(2000, (name, err) => log.warn({ err, name }, "cleanup failed"));
          log.info("stopped");
          resolve();
        })();
      });
    });
    return 0;
  },
};
