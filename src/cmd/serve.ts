import type { ServerState } from "../api/routes/ops.ts";
import { answerHealthz, HEALTHZ, isHealthz } from "../api/healthz.ts";
import { importInTurns, Lifecycle, nextTurn } from "../lib/lifecycle.ts";
import { fastConfig } from "../settings.ts";
import { isIP } from "../lib/ip.ts";
import { writeSync } from "node:fs";
import type { Config } from "../config.ts";
import { CliError, parseFlags, type Command } from "./command.ts";
import type { EarlyAnswer, Fetch, Started } from "./serve-start.ts";

/**
 * What serve-start.ts imports, in groups of modules that each take at most ~2 ms of CPU to
 * evaluate (prom-client's metrics the most), evaluated one group per turn of the event loop
 * once the server listens (see importInTurns): all at once it was ~4 ms that a liveness probe
 * coming in meanwhile waited for.
 */
const START_MODULES = [() => import("../log.ts"), () => import("../metrics.ts"), () => import("../registry/dtype.ts"), () => import("./open-deps.ts"), () => import("./serve-start.ts")];

/** What the user typed for PORT and HOST: the flag when given, else the variable. */
interface Blame {
  port: string;
  host: string;
}

/** `host:port` as a user would type it (IPv6 in brackets). */
function hostPort(cfg: Config): string {
  return `${isIP(cfg.HOST) === 6 ? `[${cfg.HOST}]` : cfg.HOST}:${cfg.PORT}`;
}

/**
 * The socket options of Bun.serve, decided here only. The port is exclusive unless `shared`:
 * Bun sets SO_REUSEPORT by itself when \`development\` is false, which let a second, unrelated
 * server bind the same port silently and take half its connections. \`shared\` is for processes
 * of one server that listen together on purpose (the kernel spreads connections among them).
 */
export function listenOn(cfg: Config, shared = false): { port: number; hostname: string; reusePort: boolean } {
  return { port: cfg.PORT, hostname: cfg.HOST, reusePort: shared };
}

/** A host name that does not resolve is a configuration error, found before anything opens. */
async function checkHost(cfg: Config, blame: Blame): Promise<void> {
  if (isIP(cfg.HOST) !== 0) return;
  try {
    const { lookup } = await import("node:dns/promises");
    await lookup(cfg.HOST);
  } catch (e) {
    throw new CliError(`configuration error: ${blame.host}: cannot resolve ${JSON.stringify(cfg.HOST)} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, 2);
  }
}

/** Bun.serve's failure to listen, as one line naming what to change (exit 2). */
function listenError(e: unknown, cfg: Config, blame: Blame): CliError {
  const code = (e as NodeJS.ErrnoException).code;
  const where = hostPort(cfg);
  switch (code) {
    case "EADDRINUSE":
      return new CliError(`address in use: ${where} is taken by another process; stop it or choose another ${blame.port}`, 2);
    case "EACCES":
      return new CliError(`${blame.port}: permission denied to listen on ${where} (ports below 1024 need privileges)`, 2);
    case "EADDRNOTAVAIL":
      return new CliError(`${blame.host}: ${cfg.HOST} is not an address of this machine (EADDRNOTAVAIL)`, 2);
    default:
      return new CliError(`cannot listen on ${where} (${blame.host}, ${blame.port}): ${code ?? (e as Error).message}`, 2);
  }
}

/**
 * The settings of one of N workers: what one process would admit or open, divided among them,
 * so that N workers together admit what one `serve` admits (MAX_IN_FLIGHT, MAX_QUEUE,
 * BULK_MAX_IN_FLIGHT, BULK_MAX_QUEUE), run as many bulk-lane threads (BULK_WORKERS) and open
 * as many PostgreSQL connections (POSTGRES_POOL_SIZE); each share at least 1 (0, "no limit",
 * stays 0). The rate limit is shared instead (the supervisor's counts, or Redis).
 */
export function workerShare(cfg: Config, workers: number): Config {
  const share = (x: number) => (x <= 0 || workers <= 1 ? x : Math.max(1, Math.ceil(x / workers)));
  return {
    ...cfg,
    MAX_IN_FLIGHT: share(cfg.MAX_IN_FLIGHT),
    MAX_QUEUE: share(cfg.MAX_QUEUE),
    BULK_MAX_IN_FLIGHT: share(cfg.BULK_MAX_IN_FLIGHT),
    BULK_MAX_QUEUE: share(cfg.BULK_MAX_QUEUE),
    BULK_WORKERS: share(cfg.BULK_WORKERS),
    POSTGRES_POOL_SIZE: share(cfg.POSTGRES_POOL_SIZE),
  };
}

/**
 * Set in the environment of the processes a supervisor starts: their worker number, the
 * supervisor's pid, and the port it listens on (the one the system chose, for PORT 0).
 */
const WORKER_ENV = "FEATURE_STORE_SERVE_WORKER";
const SUPERVISOR_ENV = "FEATURE_STORE_SERVE_SUPERVISOR";
const PORT_ENV = "FEATURE_STORE_SERVE_PORT";

/**
 * The other workers of `serve --workers N` (N > 1; the default is the core count). The
 * supervisor is worker 1 itself: it listens first and answers like one process (the cold start
 * is one process's), and once it is ready (stores open, app built) it starts N-1 more `serve` processes
 * that listen on the same port with it (SO_REUSEPORT; the kernel spreads connections among
 * them). Their stdout is forwarded whole lines at a time (the log stays one JSON line per line).
 * SIGTERM/SIGINT are passed to every worker and the supervisor exits when all have drained; a
 * worker that exits on its own stops the others and the supervisor (exit non-zero: its code,
 * or 1 for a 0; the orchestrator restarts the set).
 */
function startWorkers(workers: number, port: number, onMessage?: (message: unknown, reply: (m: unknown) => void) => void): { exited: Promise<number> } {
  // the same program: the compiled binary (argv[1] is its embedded entry), or bun running src/cli.ts
  const self = process.argv[1]?.startsWith("/$bunfs/") ? [process.execPath] : [process.execPath, process.argv[1] as string];
  const args = [...self, ...process.argv.slice(2)];
  let stopping = false;
  const procs = Array.from({ length: workers - 1 }, (_, i) =>
    Bun.spawn(args, {
      env: { ...process.env, [WORKER_ENV]: String(i + 2), [SUPERVISOR_ENV]: String(process.pid), [PORT_ENV]: String(port) },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "inherit",
      ...(onMessage ? { ipc: (message: unknown, proc: { send(m: unknown): void }) => onMessage(message, (m) => proc.send(m)), serialization: "json" as const } : {}),
    }),
  );
  // a closed or full stdout (EPIPE, EAGAIN) loses log lines, never the supervisor
  const forward = (bytes: Uint8Array): void => {
    try {
      writeSync(1, bytes);
    } catch {
      // nothing to do: the lines have nowhere to go
    }
  };
  const forwarded = procs.map(async (p) => {
    let rest = new Uint8Array(0);
    for await (const chunk of p.stdout) {
      const buf = rest.length === 0 ? chunk : Buffer.concat([rest, chunk]);
      const end = buf.lastIndexOf(10) + 1;
      if (end > 0) forward(buf.subarray(0, end));
      rest = buf.subarray(end);
    }
    if (rest.length > 0) forward(rest);
  });
  const sent = new Set<NodeJS.Signals>();
  const stopAll = (signal: NodeJS.Signals): void => {
    sent.add(signal);
    for (const p of procs) if (p.exitCode === null) p.kill(signal);
  };
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.on(signal, () => {
      stopping = true;
      stopAll(signal);
    });
  }
  const exited = Promise.all(
    procs.map(async (p, i) => {
      const code = await p.exited;
      if (!stopping) {
        stopping = true;
        console.error(JSON.stringify({ level: "error", time: new Date().toISOString(), service: "feature-store", worker: i + 2, exit_code: code, msg: "a serve worker exited; stopping the others" }));
        // the signal handlers above stop the other workers; the supervisor's own drain starts
        process.kill(process.pid, "SIGTERM");
        return code === 0 ? 1 : code;
      }
      // ended by the signal passed on before it had set its handler (still starting, so it held
      // nothing to drain): a clean stop, not a failure of the set
      return typeof p.signalCode === "string" && sent.has(p.signalCode) ? 0 : code;
    }),
  ).then(async (codes) => {
    await Promise.all(forwarded);
    return Math.max(0, ...codes);
  });
  return { exited };
}

export const command: Command = {
  summary: "run the HTTP API",
  help: `Usage: feature-store serve [--port N] [--host H] [--workers N]

Runs the HTTP API (default 0.0.0.0:8000; env PORT, HOST). With no POSTGRES_URL it uses the
embedded SQLite database under DATA_DIR (migrated automatically); with no REDIS_URL an
in-process online cache. The start line names the database (database_location). On
SIGTERM/SIGINT /readyz turns 503, new connections stop, in-flight requests finish (at most
SHUTDOWN_TIMEOUT seconds), then the process exits 0. On Linux the thread answering online
lookups asks the kernel for a short time slice (SERVING_SLICE_US, default 100 us) and the
bulk lane's threads for SCHED_BATCH (BULK_SLICE_US); THREAD_SCHEDULING=false leaves the
kernel's defaults (LOG_LEVEL=debug shows what was applied).

Options:
  --port N   port to listen on (env PORT, default 8000); one another process listens on
             is an error (exit 2), never shared
  --host H   address to bind (env HOST, default 0.0.0.0): an IP address of this machine or
             a host name resolving to one
  --workers N  processes listening together on the port (env SERVE_WORKERS, default the
             number of cores): the first, which also supervises, starts the N-1 others
             once it is ready; a value written through any of them is served by all at
             once; SIGTERM drains them all; together they admit what one process admits
             (each its share of MAX_IN_FLIGHT, BULK_MAX_IN_FLIGHT, ...), with one
             RATE_LIMIT_PER_KEY; /metrics answers for the worker that took the
             connection (series labelled worker="N"); 1: one process, no supervisor
  -h, --help show this help`,
  async run(argv) {
    const { values } = parseFlags(argv, { port: { type: "string" }, host: { type: "string" }, workers: { type: "string" } });
    const flags = { PORT: values.port, HOST: values.host, SERVE_WORKERS: values.workers };
    // read without zod; a value it refuses is read again by loadConfig, for its one-line error
    let cfg = fastConfig(process.env, flags) ?? (await import("./common.ts")).config(flags);
    const blame: Blame = { port: values.port === undefined ? "PORT" : "--port", host: values.host === undefined ? "HOST" : "--host" };
    await checkHost(cfg, blame);
    const started = process.env[WORKER_ENV];
    // the supervisor of N workers (see startWorkers) is worker 1
    const supervising = cfg.SERVE_WORKERS > 1 && started === undefined;
    const worker = supervising ? "1" : started;
    const lifecycle = new Lifecycle();

    if (supervising && cfg.PORT !== 0) {
      // the workers listen with SO_REUSEPORT, which would share the port with an unrelated server
      // that set it too: an exclusive bind first (closed at once) finds one ("address in use")
      try {
        Bun.serve({ ...listenOn(cfg), fetch: () => new Response(null, { status: 503 }), development: false }).stop(true);
      } catch (e) {
        throw listenError(e, cfg, blame);
      }
    }
    if (started !== undefined) {
      const port = process.env[PORT_ENV];
      if (port !== undefined) cfg = { ...cfg, PORT: Number(port) };
      // a worker whose supervisor is gone (killed with SIGKILL) drains and exits rather than hold
      // the port (the supervisor may die while the worker is still starting: its pid comes from
      // the environment, not from the parent seen now)
      const supervisor = Number(process.env[SUPERVISOR_ENV]);
      const orphaned = setInterval(() => {
        if (process.ppid === supervisor) return;
        clearInterval(orphaned);
        process.kill(process.pid, "SIGTERM");
      }, 1000);
      orphaned.unref();
      lifecycle.add("supervisor watch", () => clearInterval(orphaned));
    }

    // Cold start: the server listens first and answers GET /healthz at once (the liveness probe);
    // the stores, the logger and the rest start right after (serve-start.ts), and any other
    // request (/readyz too: it never answers 200 before the stores are loaded) waits for them.
    // The /healthz answered before are counted and logged when the metrics and the logger are there.
    const state: ServerState = { draining: false };
    const early: EarlyAnswer[] = [];
    const answerEarly: Fetch = (req, server) => {
      if (!isHealthz(req)) return starting.then((s) => s.fetch(req, server));
      return answerHealthz(req, state.draining, (id, seconds) => early.push({ id, method: "GET", route: HEALTHZ, status: 200, seconds, at: Date.now() }));
    };
    let answer: Fetch = answerEarly;
    let server: ReturnType<typeof Bun.serve>;
    try {
      server = Bun.serve({
        // the workers of one supervisor listen together (see supervise)
        ...listenOn(cfg, worker !== undefined),
        fetch: (req, srv) => answer(req, srv),
        // The app enforces BODY_LIMIT_BYTES itself, with a 413 problem+json: by Content-Length
        // before reading a byte, and by counting a chunked body as it streams. A lower limit here
        // would make Bun answer a bare 413 (no body) first, so Bun's own limit is effectively off.
        maxRequestBodySize: Number.MAX_SAFE_INTEGER,
        development: false,
      });
    } catch (e) {
      await lifecycle.stop(2000, () => {});
      throw listenError(e, cfg, blame);
    }
    // the supervisor keeps the rate-limit counts of all its workers without Redis (asked over IPC);
    // imported after listening: nothing /healthz needs
    const windows = supervising && cfg.RATE_LIMIT_PER_KEY > 0 && !cfg.REDIS_URL ? nextTurn().then(async () => new (await import("../serving/supervisor-window.ts")).SupervisorWindows()) : undefined;
    // The start runs in steps, each after a turn of the event loop (nextTurn): a probe that
    // comes in meanwhile is answered between two steps, not after the whole start.
    const starting: Promise<Started> = importInTurns(START_MODULES)
      .then(() => Promise.all([import("./serve-start.ts"), windows]))
      .then(([m, w]) => m.startServing(cfg, worker === undefined ? cfg : workerShare(cfg, cfg.SERVE_WORKERS), worker, state, lifecycle, server.url.href, early, w?.counts));
    starting.catch(() => {}); // handled below

    const stopped = new Promise<void>((resolve) => {
      lifecycle.onSignal((signal) => {
        state.draining = true;
        void (async () => {
          const started = await starting.catch(() => undefined);
          if (started === undefined) return; // the start failed: run() reports it
          const log = started.log;
          log.info({ signal }, "draining");
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
      }, worker !== undefined ? 2000 : 0);
    });
    let up: Started;
    try {
      up = await starting;
      answer = up.fetch;
    } catch (e) {
      // a store that cannot be opened or is not migrated: the same error as before listening
      await server.stop(true);
      await lifecycle.stop(2000, () => {});
      throw e;
    }
    // The other workers start once the first is ready, its app built too (a store it cannot open
    // stops nothing else): started earlier, their start took the CPU that the first one's app
    // build needed, and a connection the kernel gave one of them waited for its whole start.
    await up.built;
    const counts = await windows;
    const others = supervising && !state.draining ? startWorkers(cfg.SERVE_WORKERS, server.port ?? cfg.PORT, counts && ((m, reply) => counts.onMessage(m, reply))) : undefined;
    await stopped;
    return others ? others.exited : 0;
  },
};
