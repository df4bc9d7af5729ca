/**
 * Test-service harness: starts REAL PostgreSQL, Redis (single node and cluster) and
 * Apache Kafka (KRaft) processes on free 127.0.0.1 ports, for tests, benchmarks and the
 * test runner, and stops them afterwards.
 *
 * - Every service runs from its own temp dir (removed on `stop()`), logs to a file in it,
 *   and runs in its own process group so that Ctrl-C in a terminal does not hit it
 *   directly; the harness stops it instead.
 * - Whatever is missing is installed on the fly (as root): `apt-get install
 *   postgresql-15` / `redis-server`, and the Kafka jars through Maven (see
 *   `kafka-jars.ts`, cached in `~/.cache/feature-store-test`).
 * - Cleanup: `stop()` per service, {@link stopAll} for everything, automatic on process
 *   exit and on SIGINT/SIGTERM/SIGHUP, and a tiny watchdog process that kills the
 *   services if this process dies without running any handler (SIGKILL, crash).
 *
 * CLI: `bun test/harness/services.ts postgres redis redis-cluster kafka [--kafka-version=3.9]`
 * prints `POSTGRES_URL=…`, `REDIS_URL=…`, `REDIS_CLUSTER_URLS=…`, `KAFKA_BROKERS=…`
 * (+ `KAFKA_VERSION=…`) on stdout once everything is ready (progress goes to stderr) and
 * runs until SIGINT/SIGTERM.
 *
 * Usage in a bun test (hooks have bun's 5 s default timeout: pass a longer one):
 * ```ts
 * import { afterAll, beforeAll } from "bun:test";
 * import { startKafka, startPostgres, type KafkaService, type PgService } from "../harness/services.ts";
 * let pg: PgService, kafka: KafkaService;
 * beforeAll(async () => {
 *   [pg, kafka] = await Promise.all([startPostgres(), startKafka()]);
 *   await kafka.createTopic("events", 3);
 * }, 180_000);
 * afterAll(async () => { await Promise.all([pg.stop(), kafka.stop()]); }, 60_000);
 * ```
 *
 * @module
 */
import { randomBytes } from "node:crypto";
import { chownSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { ensureJavaTools, type KafkaLine, kafkaVersionFor, resolveKafkaJars } from "./kafka-jars.ts";

export { KAFKA_VERSIONS, type KafkaLine } from "./kafka-jars.ts";

const HOST = "127.0.0.1";

// ───────────────────────────── small utilities ─────────────────────────────

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Ports handed out recently by {@link freePort}, so two calls never return the same port before it is bound. */
const recentPorts = new Map<number, number>();

/**
 * Finds a free TCP port on 127.0.0.1 by binding port 0 and releasing it. A port is not
 * handed out twice within a minute by the same process.
 */
export async function freePort(): Promise<number> {
  const now = Date.now();
  for (const [p, t] of recentPorts) if (now - t > 60_000) recentPorts.delete(p);
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = createServer();
      srv.unref();
      srv.once("error", reject);
      srv.listen({ host: HOST, port: 0, exclusive: true }, () => {
        const addr = srv.address();
        const p = addr !== null && typeof addr === "object" ? addr.port : 0;
        srv.close(() => resolve(p));
      });
    });
    // Redis cluster nodes use port+10000 by default; we set cluster-port explicitly, but
    // stay below 55535 anyway so nothing ever computes an invalid port.
    if (port > 0 && port < 55_535 && !recentPorts.has(port)) {
      recentPorts.set(port, now);
      return port;
    }
  }
  throw new Error("freePort: could not find a free port on 127.0.0.1");
}

/** True when something accepts TCP connections on 127.0.0.1:port. */
function tcpOpen(port: number, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ host: HOST, port });
    const done = (ok: boolean): void => {
      sock.removeAllListeners();
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once("connect", () => done(true));
    sock.once("error", () => done(false));
  });
}

/** Last `n` lines of a text file ("" when it cannot be read). */
function tailFile(path: string, n = 40): string {
  try {
    return readFileSync(path, "utf8").trimEnd().split("\n").slice(-n).join("\n");
  } catch {
    return "";
  }
}

/** Error thrown when a service does not come up; its message ends with the service log. */
export class ServiceStartError extends Error {
  /** @param message what failed @param logFile log to quote (last 40 lines) */
  constructor(message: string, logFile?: string) {
    const tail = logFile !== undefined ? tailFile(logFile) : "";
    super(tail !== "" ? `${message}\n--- last lines of ${logFile} ---\n${tail}\n--- end of log ---` : message);
    this.name = "ServiceStartError";
  }
}

/** Runs a command to completion and returns exit code and combined output. */
async function run(cmd: string[], opts: { cwd?: string; env?: Record<string, string | undefined>; timeoutMs?: number } = {}): Promise<{ code: number; output: string }> {
  const proc = Bun.spawn({ cmd, ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}), env: opts.env ?? process.env, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), opts.timeoutMs ?? 120_000);
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { code, output: (out + err).trimEnd() };
}

function isRoot(): boolean {
  return typeof process.getuid === "function" && process.getuid() === 0;
}

/** uid/gid of a local user from /etc/passwd, or undefined. */
function lookupUser(name: string): { uid: number; gid: number } | undefined {
  try {
    for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
      const f = line.split(":");
      if (f[0] === name && f[2] !== undefined && f[3] !== undefined) return { uid: Number(f[2]), gid: Number(f[3]) };
    }
  } catch {
    /* no passwd file */
  }
  return undefined;
}

// ───────────────────────────── installing packages ─────────────────────────────

let aptQueue: Promise<unknown> = Promise.resolve();
let aptUpdated = false;

/**
 * Installs Debian packages with apt-get (running `apt-get update` once per process
 * first). Only works as root; otherwise throws with the command to run by hand. Package
 * maintainer scripts are not allowed to start system services while this runs.
 */
export function aptInstall(packages: string[]): Promise<void> {
  const job = aptQueue.then(async () => {
    if (!isRoot()) {
      throw new Error(`missing packages ${packages.join(" ")}: run \`sudo apt-get install -y ${packages.join(" ")}\` (the harness installs them itself only as root)`);
    }
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive", NEEDRESTART_MODE: "l" };
    const lock = ["-o", "DPkg::Lock::Timeout=600"];
    // Keep maintainer scripts from starting the system's redis/postgres service.
    const policy = "/usr/sbin/policy-rc.d";
    const ownPolicy = !existsSync(policy);
    if (ownPolicy) writeFileSync(policy, "#!/bin/sh\n# written by feature-store test harness during apt-get install\nexit 101\n", { mode: 0o755 });
    try {
      if (!aptUpdated) {
        const u = await run(["apt-get", ...lock, "update"], { env, timeoutMs: 600_000 });
        if (u.code !== 0) throw new Error(`apt-get update failed (exit ${u.code}):\n${u.output.split("\n").slice(-40).join("\n")}`);
        aptUpdated = true;
      }
      const r = await run(["apt-get", ...lock, "install", "-y", "--no-install-recommends", ...packages], { env, timeoutMs: 900_000 });
      if (r.code !== 0) throw new Error(`apt-get install ${packages.join(" ")} failed (exit ${r.code}):\n${r.output.split("\n").slice(-40).join("\n")}`);
    } finally {
      if (ownPolicy) rmSync(policy, { force: true });
    }
  });
  aptQueue = job.catch(() => undefined);
  return job;
}

// ───────────────────────────── process tracking and cleanup ─────────────────────────────

/** A running service process; it leads its own process group (pgid == pid). */
interface Child {
  proc: Subprocess;
  pid: number;
  logFile: string;
  running(): boolean;
}

/** What {@link stopAll} stops. */
const services = new Set<{ stop(): Promise<void> }>();
/**
 * Service processes still alive (pid == pgid), with the signal that ends them quickly
 * and cleanly enough when this process exits without stopping them (SIGQUIT makes
 * postgres kill and reap its backends; Redis and Kafka have no children: SIGKILL).
 */
const liveGroups = new Map<number, NodeJS.Signals>();
/** Temp dirs not yet removed. */
const liveDirs = new Set<string>();

let watchdog: Subprocess<"pipe", "ignore", "ignore"> | undefined;
let hooksInstalled = false;

/**
 * The watchdog is a bash process reading "p PID SIGNAL" / "u PID" / "d DIR" / "r DIR"
 * lines from a pipe. When this process ends in any way (even SIGKILL), the pipe reaches
 * EOF and the watchdog signals every process still registered, gives them 3 s, SIGKILLs
 * their process groups and removes every registered dir.
 */
const WATCHDOG_SCRIPT = `
trap '' INT TERM HUP
declare -A P=() D=()
while IFS= read -r l; do
  case "$l" in
    "p "*) set -- \${l#p }; P[$1]="$2" ;;
    "u "*) unset "P[\${l#u }]" ;;
    "d "*) D["\${l#d }"]=1 ;;
    "r "*) unset "D[\${l#r }]" ;;
  esac
done
[ \${#P[@]} -eq 0 ] && [ \${#D[@]} -eq 0 ] && exit 0
alive() { local s; read -r _ _ s _ < "/proc/$1/stat" 2>/dev/null || return 1; [ "$s" != Z ]; }
for g in "\${!P[@]}"; do kill -"\${P[$g]}" "$g" 2>/dev/null; done
for i in $(seq 30); do
  any=0; for g in "\${!P[@]}"; do alive "$g" && any=1; done
  [ $any = 0 ] && break; sleep 0.1
done
for g in "\${!P[@]}"; do kill -KILL -- "-$g" 2>/dev/null; done
[ \${#P[@]} -gt 0 ] && sleep 0.3
for d in "\${!D[@]}"; do case "$d" in /*/fs-"test"-*) rm -rf -- "$d" 2>/dev/null || { sleep 1; rm -rf -- "$d"; } ;; esac; done
exit 0
`;

function tellWatchdog(line: string): void {
  try {
    if (watchdog === undefined) {
      watchdog = Bun.spawn({ cmd: ["bash", "-c", WATCHDOG_SCRIPT], stdin: "pipe", stdout: "ignore", stderr: "ignore", detached: true });
      watchdog.unref();
      watchdog.stdin.unref();
    }
    watchdog.stdin.write(`${line}\n`);
    void watchdog.stdin.flush();
  } catch {
    watchdog = undefined; // the exit hook falls back to SIGKILL + rm itself
  }
}

function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    /* already gone */
  }
}

const SIGNAL_EXIT: Record<string, number> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 };

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  // A script that forgets stop(): the event loop empties (service processes are
  // unref'd), so stop them properly (reaping them) before the process exits.
  process.on("beforeExit", () => {
    if (services.size > 0) void stopAll();
  });
  // Exiting with services still up (e.g. bun test, which emits no beforeExit): signal
  // them; the watchdog, which sees our exit, escalates to SIGKILL and removes the dirs.
  process.on("exit", () => {
    for (const [pid, sig] of liveGroups) {
      if (watchdog !== undefined) {
        try {
          process.kill(pid, sig);
        } catch {
          /* gone */
        }
      } else killGroup(pid, "SIGKILL");
    }
    if (watchdog === undefined || liveGroups.size === 0) {
      for (const d of liveDirs) {
        try {
          rmSync(d, { recursive: true, force: true });
        } catch {
          /* best effort */
        }
      }
    }
  });
  for (const sig of Object.keys(SIGNAL_EXIT) as NodeJS.Signals[]) {
    const handler = (): void => {
      void (async () => {
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([stopAll(), new Promise<void>((resolve) => (timer = setTimeout(resolve, 20_000)))]);
        clearTimeout(timer);
        // Only exit when nobody else handles this signal (keep e.g. an app's graceful shutdown in charge).
        if (process.listenerCount(sig) <= 1) process.exit(SIGNAL_EXIT[sig] ?? 1);
      })();
    };
    process.on(sig, handler);
  }
}

function makeTempDir(kind: string): string {
  installHooks();
  const dir = mkdtempSync(join(tmpdir(), `fs-test-${kind}-`));
  liveDirs.add(dir);
  tellWatchdog(`d ${dir}`);
  return dir;
}

async function removeTempDir(dir: string): Promise<void> {
  for (let i = 0; i < 10; i++) {
    try {
      rmSync(dir, { recursive: true, force: true });
      break;
    } catch {
      await sleep(200); // a dying process may still be writing into it
    }
  }
  liveDirs.delete(dir);
  tellWatchdog(`r ${dir}`);
}

/**
 * Starts a service process in its own process group with stdout+stderr appended to
 * `logFile`, tracked for cleanup.
 */
function launch(cmd: string[], opts: { cwd: string; logFile: string; exitSignal: NodeJS.Signals; env?: Record<string, string | undefined> }): Child {
  installHooks();
  const fd = openSync(opts.logFile, "a");
  let proc: Subprocess;
  try {
    proc = Bun.spawn({ cmd, cwd: opts.cwd, env: opts.env ?? process.env, stdin: "ignore", stdout: fd, stderr: fd, detached: true });
  } finally {
    closeSync(fd);
  }
  proc.unref();
  const pid = proc.pid;
  liveGroups.set(pid, opts.exitSignal);
  tellWatchdog(`p ${pid} ${opts.exitSignal.replace(/^SIG/, "")}`);
  void proc.exited.then(() => {
    // Leftover group members (e.g. postgres backends after a SIGKILL) go too.
    killGroup(pid, "SIGKILL");
    liveGroups.delete(pid);
    tellWatchdog(`u ${pid}`);
  });
  return { proc, pid, logFile: opts.logFile, running: () => proc.exitCode === null && proc.signalCode === null };
}

/** Sends `signal` to the process, waits up to `graceMs`, then SIGKILLs its whole group. */
async function terminate(child: Child, signal: NodeJS.Signals, graceMs: number): Promise<void> {
  if (child.running()) {
    try {
      process.kill(child.pid, signal);
    } catch {
      /* gone */
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const exited = await Promise.race([
      child.proc.exited.then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), graceMs);
      }),
    ]);
    clearTimeout(timer);
    if (!exited) killGroup(child.pid, "SIGKILL");
  }
  await child.proc.exited;
  killGroup(child.pid, "SIGKILL");
}

/**
 * Polls `check` every `intervalMs` until it returns true; fails early when the process
 * dies and after `timeoutMs`, quoting the service log.
 */
async function waitReady(what: string, child: Child, timeoutMs: number, check: () => Promise<boolean>, intervalMs = 200): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = "";
  for (;;) {
    if (!child.running()) {
      throw new ServiceStartError(`${what}: process exited with ${child.proc.signalCode ?? `code ${child.proc.exitCode}`} before it was ready`, child.logFile);
    }
    try {
      if (await check()) return;
    } catch (e) {
      lastError = e instanceof Error ? e.message : String(e);
    }
    if (Date.now() > deadline) {
      throw new ServiceStartError(`${what}: not ready after ${Math.round(timeoutMs / 1000)} s${lastError !== "" ? ` (last error: ${lastError})` : ""}`, child.logFile);
    }
    await sleep(intervalMs);
  }
}

/** True when the log says the port was taken between freePort() and the bind. */
function portClash(logFile: string): boolean {
  return /address already in use|could not bind|BindException|could not create any TCP\/IP sockets/i.test(tailFile(logFile, 200));
}

/**
 * Stops every service started by this module (in parallel) and removes their temp dirs.
 * Called automatically on exit and on SIGINT/SIGTERM/SIGHUP.
 */
export async function stopAll(): Promise<void> {
  await Promise.allSettled([...services].map((s) => s.stop()));
}

/**
 * Process-group ids (== leader pids) of the service processes this module still runs,
 * and the temp dirs it has not removed yet. For leak checks in tests.
 */
export function trackedResources(): { processGroups: number[]; dirs: string[] } {
  return { processGroups: [...liveGroups.keys()], dirs: [...liveDirs] };
}

/** Options of `stopServer()` on every service. */
export interface StopServerOptions {
  /**
   * Crash instead of shutting down cleanly: SIGKILL for Redis and Kafka, an immediate
   * (SIGQUIT, crash-recovery on next start) shutdown for PostgreSQL.
   */
  hard?: boolean;
}

// ───────────────────────────── PostgreSQL ─────────────────────────────

/** Options of {@link startPostgres}. */
export interface PostgresOptions {
  /** Password of the `postgres` superuser; without one, TCP auth is `trust`. */
  password?: string;
  /** Database created at start and used in `url` (default `feature_store`). */
  database?: string;
  /** Extra server settings (`-c name=value`), e.g. `{ shared_buffers: "256MB" }`. */
  settings?: Record<string, string | number | boolean>;
  /** Directory with initdb/postgres (default `$FEATURE_STORE_PG_BIN` or /usr/lib/postgresql/15/bin). */
  binDir?: string;
  /** How long to wait for the server (default 90 s). */
  startTimeoutMs?: number;
}

/** A running PostgreSQL server. */
export interface PgService {
  /** `postgres://postgres[:password]@127.0.0.1:PORT/feature_store` */
  url: string;
  /** URL of the `postgres` maintenance database on the same server. */
  adminUrl: string;
  /** Always `127.0.0.1`. */
  host: string;
  /** TCP port (kept across stopServer/startServer). */
  port: number;
  /** Superuser name, `postgres`. */
  user: string;
  /** Superuser password, when one was set. */
  password: string | undefined;
  /** Name of the database in `url` (`feature_store`). */
  database: string;
  /** Temp dir holding `data/`, the unix socket and `postgres.log`. */
  dir: string;
  /** Server log (stdout+stderr of `postgres`). */
  logFile: string;
  /** Creates a fresh database (random name when omitted) and returns its URL. */
  createDatabase(name?: string): Promise<string>;
  /** Drops a database (forcibly disconnecting its sessions). */
  dropDatabase(name: string): Promise<void>;
  /** Stops the server, keeping data dir and port (fast shutdown, or a crash with `hard`). */
  stopServer(opts?: StopServerOptions): Promise<void>;
  /** Starts the server again on the same data dir and port; no-op when running. */
  startServer(): Promise<void>;
  /** True while the server process runs. */
  isRunning(): boolean;
  /** Stops the server and removes its temp dir. */
  stop(): Promise<void>;
}

const PG_DEFAULT_BIN = "/usr/lib/postgresql/15/bin";
let pgInstall: Promise<void> | undefined;

async function ensurePostgresBinaries(binDir: string): Promise<void> {
  if (existsSync(join(binDir, "postgres")) && existsSync(join(binDir, "initdb"))) return;
  if (binDir !== PG_DEFAULT_BIN) throw new Error(`no postgres/initdb in ${binDir}`);
  pgInstall ??= aptInstall(["postgresql-15"]);
  await pgInstall;
  if (!existsSync(join(binDir, "postgres"))) throw new Error(`postgresql-15 installed but ${binDir}/postgres is missing`);
}

/** Validates a SQL identifier used for database names. */
function checkDbName(name: string): void {
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(name)) throw new Error(`invalid database name "${name}" (use [A-Za-z_][A-Za-z0-9_]*)`);
}

/** Replaces the database (path) of a postgres URL. */
function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

/**
 * Creates a database on the server behind `serverUrl` (any database URL on it, with a
 * user allowed to CREATE DATABASE) and returns the URL of the new database. Useful when
 * the server was started elsewhere, e.g. by the CLI of this module (`POSTGRES_URL`).
 */
export async function createDatabaseAt(serverUrl: string, name?: string): Promise<string> {
  const db = name ?? `t_${randomBytes(6).toString("hex")}`;
  checkDbName(db);
  const { default: postgres } = await import("postgres");
  const sql = postgres(withDatabase(serverUrl, "postgres"), { max: 1, onnotice: () => {}, connect_timeout: 30, idle_timeout: 1 });
  try {
    await sql.unsafe(`CREATE DATABASE "${db}"`);
  } finally {
    await sql.end({ timeout: 5 });
  }
  return withDatabase(serverUrl, db);
}

async function dropDatabaseAt(serverUrl: string, name: string): Promise<void> {
  checkDbName(name);
  const { default: postgres } = await import("postgres");
  const sql = postgres(withDatabase(serverUrl, "postgres"), { max: 1, onnotice: () => {}, connect_timeout: 30, idle_timeout: 1 });
  try {
    await sql.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/**
 * Starts a throw-away PostgreSQL 15 server on a free port (initdb into a temp dir, as the
 * `postgres` user when running as root) and creates the `feature_store` database.
 */
export async function startPostgres(opts: PostgresOptions = {}): Promise<PgService> {
  const binDir = opts.binDir ?? process.env["FEATURE_STORE_PG_BIN"] ?? PG_DEFAULT_BIN;
  await ensurePostgresBinaries(binDir);
  const timeoutMs = opts.startTimeoutMs ?? 90_000;
  const database = opts.database ?? "feature_store";
  checkDbName(database);
  const user = "postgres";

  // As root, initdb/postgres refuse to run: drop to the postgres user (setpriv execs in
  // place, so the pid we track is the postmaster itself).
  let asUser: string[] = [];
  const dir = makeTempDir("pg");
  const dataDir = join(dir, "data");
  const logFile = join(dir, "postgres.log");
  try {
    if (isRoot()) {
      const pgUser = lookupUser("postgres");
      if (pgUser === undefined) throw new Error("running as root but there is no `postgres` user to run the server as");
      chownSync(dir, pgUser.uid, pgUser.gid);
      asUser = Bun.which("setpriv") !== null ? ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"] : ["runuser", "-u", "postgres", "--"];
    }
    const initArgs = [join(binDir, "initdb"), "-D", dataDir, "-U", user, "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"];
    if (opts.password !== undefined) {
      const pwFile = join(dir, "pwfile");
      writeFileSync(pwFile, `${opts.password}\n`, { mode: 0o600 });
      if (isRoot()) {
        const pgUser = lookupUser("postgres");
        if (pgUser !== undefined) chownSync(pwFile, pgUser.uid, pgUser.gid);
      }
      initArgs.push("--auth-local=trust", "--auth-host=scram-sha-256", `--pwfile=${pwFile}`);
    } else {
      initArgs.push("--auth=trust");
    }
    const init = await run([...asUser, ...initArgs], { cwd: dir, timeoutMs: 120_000 });
    writeFileSync(join(dir, "initdb.log"), init.output);
    if (init.code !== 0) throw new ServiceStartError(`initdb failed (exit ${init.code})`, join(dir, "initdb.log"));
    rmSync(join(dir, "pwfile"), { force: true });
  } catch (e) {
    await removeTempDir(dir);
    throw e;
  }

  const settings: Record<string, string | number | boolean> = {
    listen_addresses: HOST,
    unix_socket_directories: dir,
    fsync: "off",
    synchronous_commit: "off",
    full_page_writes: "off",
    max_connections: 200,
    logging_collector: "off",
    huge_pages: "off",
    ...opts.settings,
  };
  const pgArgs = (port: number): string[] => [
    ...asUser,
    join(binDir, "postgres"),
    "-D",
    dataDir,
    "-p",
    String(port),
    ...Object.entries(settings).flatMap(([k, v]) => ["-c", `${k}=${typeof v === "boolean" ? (v ? "on" : "off") : String(v)}`]),
  ];
  const auth = opts.password !== undefined ? `${user}:${encodeURIComponent(opts.password)}` : user;

  let port = 0;
  let child: Child | undefined;
  let stopped = false;

  const isReady = async (): Promise<boolean> => {
    const r = await run([join(binDir, "pg_isready"), "-q", "-h", HOST, "-p", String(port), "-U", user, "-d", "postgres", "-t", "2"], { timeoutMs: 10_000 });
    return r.code === 0;
  };

  const bootOnce = async (): Promise<void> => {
    const c = launch(pgArgs(port), { cwd: dir, logFile, exitSignal: "SIGQUIT" });
    child = c;
    await waitReady(`postgres on ${HOST}:${port}`, c, timeoutMs, isReady);
  };

  const startServer = async (): Promise<void> => {
    if (stopped) throw new Error("postgres service was stopped for good");
    if (child?.running() === true) return;
    await bootOnce();
  };

  const stopServer = async (o: StopServerOptions = {}): Promise<void> => {
    const c = child;
    if (c === undefined) return;
    // SIGINT = fast shutdown; SIGQUIT = immediate shutdown (crash recovery on next start).
    await terminate(c, o.hard === true ? "SIGQUIT" : "SIGINT", 15_000);
  };

  const adminUrlOf = (): string => `postgres://${auth}@${HOST}:${port}/postgres`;

  const svc: PgService = {
    url: "",
    adminUrl: "",
    host: HOST,
    port: 0,
    user,
    password: opts.password,
    database,
    dir,
    logFile,
    createDatabase: (name?: string) => createDatabaseAt(adminUrlOf(), name),
    dropDatabase: (name: string) => dropDatabaseAt(adminUrlOf(), name),
    stopServer,
    startServer,
    isRunning: () => child?.running() === true,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      services.delete(svc);
      if (child !== undefined) await terminate(child, "SIGINT", 10_000);
      await removeTempDir(dir);
    },
  };
  services.add(svc);

  try {
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      try {
        await bootOnce();
        break;
      } catch (e) {
        if (child !== undefined) await terminate(child, "SIGQUIT", 5_000);
        if (attempt < 3 && portClash(logFile)) continue;
        throw e;
      }
    }
    await createDatabaseAt(adminUrlOf(), database);
  } catch (e) {
    await svc.stop();
    throw e;
  }
  svc.port = port;
  svc.url = `postgres://${auth}@${HOST}:${port}/${database}`;
  svc.adminUrl = adminUrlOf();
  return svc;
}

// ───────────────────────────── Redis ─────────────────────────────

let redisInstall: Promise<void> | undefined;

async function ensureRedis(): Promise<void> {
  if (Bun.which("redis-server") !== null && Bun.which("redis-cli") !== null) return;
  redisInstall ??= aptInstall(["redis-server", "redis-tools"]);
  await redisInstall;
  if (Bun.which("redis-server") === null) throw new Error("apt-get installed redis-server but it is not on PATH");
}

/** One RESP reply, parsed just enough for PING / CLUSTER INFO / simple commands. */
function parseReply(buf: Buffer): { ok: boolean; value: string } | undefined {
  const nl = buf.indexOf("\r\n");
  if (nl < 0) return undefined;
  const type = buf.toString("latin1", 0, 1);
  const line = buf.toString("utf8", 1, nl);
  if (type === "+" || type === ":") return { ok: true, value: line };
  if (type === "-") return { ok: false, value: line };
  if (type === "$") {
    const len = Number(line);
    if (len < 0) return { ok: true, value: "" };
    if (buf.length < nl + 2 + len + 2) return undefined;
    return { ok: true, value: buf.toString("utf8", nl + 2, nl + 2 + len) };
  }
  return { ok: true, value: buf.toString("utf8") };
}

/** Sends one command to a Redis on 127.0.0.1:port over a raw socket; rejects on an error reply. */
export function redisCommand(port: number, args: string[], timeoutMs = 2_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = createConnection({ host: HOST, port });
    let buf = Buffer.alloc(0);
    const finish = (err: Error | undefined, value?: string): void => {
      sock.removeAllListeners();
      sock.destroy();
      if (err !== undefined) reject(err);
      else resolve(value ?? "");
    };
    sock.setTimeout(timeoutMs, () => finish(new Error(`redis ${args[0] ?? ""} on port ${port}: timeout`)));
    sock.once("error", (e) => finish(e));
    sock.once("connect", () => {
      sock.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join("")}`);
    });
    sock.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const r = parseReply(buf);
      if (r === undefined) return;
      if (r.ok) finish(undefined, r.value);
      else finish(new Error(`redis ${args[0] ?? ""}: ${r.value}`));
    });
  });
}

/** Options of {@link startRedis}. */
export interface RedisOptions {
  /** e.g. `"64mb"` */
  maxmemory?: string;
  /** e.g. `"allkeys-lru"` */
  maxmemoryPolicy?: string;
  /** More `redis-server` arguments, e.g. `["--appendonly", "yes"]`. */
  args?: string[];
  /** How long to wait for PING (default 30 s). */
  startTimeoutMs?: number;
}

/** A running Redis server. */
export interface RedisService {
  /** `redis://127.0.0.1:PORT` */
  url: string;
  /** Always `127.0.0.1`. */
  host: string;
  /** TCP port (kept across stopServer/startServer). */
  port: number;
  /** Temp dir (Redis `dir`). */
  dir: string;
  /** Server log. */
  logFile: string;
  /** Stops the server, keeping its dir and port (SHUTDOWN via SIGTERM, or SIGKILL with `hard`). */
  stopServer(opts?: StopServerOptions): Promise<void>;
  /** Starts it again on the same port (data is gone unless persistence was enabled via `args`). */
  startServer(): Promise<void>;
  /** True while the server process runs. */
  isRunning(): boolean;
  /** Stops the server and removes its temp dir. */
  stop(): Promise<void>;
}

interface RedisNode {
  port: number;
  child: Child | undefined;
}

function redisArgs(port: number, dir: string, opts: RedisOptions, extra: string[] = []): string[] {
  const args = ["redis-server", "--port", String(port), "--bind", HOST, "--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no", "--logfile", "", "--protected-mode", "no"];
  if (opts.maxmemory !== undefined) args.push("--maxmemory", opts.maxmemory);
  if (opts.maxmemoryPolicy !== undefined) args.push("--maxmemory-policy", opts.maxmemoryPolicy);
  return [...args, ...extra, ...(opts.args ?? [])];
}

async function bootRedis(node: RedisNode, argsFor: (port: number) => string[], dir: string, logFile: string, timeoutMs: number): Promise<void> {
  const c = launch(argsFor(node.port), { cwd: dir, logFile, exitSignal: "SIGKILL" });
  node.child = c;
  await waitReady(`redis on ${HOST}:${node.port}`, c, timeoutMs, async () => (await redisCommand(node.port, ["PING"])) === "PONG", 100);
}

/** Starts a throw-away `redis-server` (no persistence) on a free port. */
export async function startRedis(opts: RedisOptions = {}): Promise<RedisService> {
  await ensureRedis();
  const timeoutMs = opts.startTimeoutMs ?? 30_000;
  const dir = makeTempDir("redis");
  const logFile = join(dir, "redis.log");
  const node: RedisNode = { port: 0, child: undefined };
  let stopped = false;
  const argsFor = (port: number): string[] => redisArgs(port, dir, opts);

  const svc: RedisService = {
    url: "",
    host: HOST,
    port: 0,
    dir,
    logFile,
    stopServer: async (o: StopServerOptions = {}) => {
      if (node.child !== undefined) await terminate(node.child, o.hard === true ? "SIGKILL" : "SIGTERM", 10_000);
    },
    startServer: async () => {
      if (stopped) throw new Error("redis service was stopped for good");
      if (node.child?.running() === true) return;
      await bootRedis(node, argsFor, dir, logFile, timeoutMs);
    },
    isRunning: () => node.child?.running() === true,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      services.delete(svc);
      if (node.child !== undefined) await terminate(node.child, "SIGTERM", 5_000);
      await removeTempDir(dir);
    },
  };
  services.add(svc);
  try {
    for (let attempt = 1; ; attempt++) {
      node.port = await freePort();
      try {
        await bootRedis(node, argsFor, dir, logFile, timeoutMs);
        break;
      } catch (e) {
        if (node.child !== undefined) await terminate(node.child, "SIGKILL", 0);
        if (attempt < 3 && portClash(logFile)) continue;
        throw e;
      }
    }
  } catch (e) {
    await svc.stop();
    throw e;
  }
  svc.port = node.port;
  svc.url = `redis://${HOST}:${node.port}`;
  return svc;
}

/** Options of {@link startRedisCluster}. */
export interface RedisClusterOptions {
  /** Number of masters (default 3, the minimum `redis-cli --cluster create` accepts). */
  masters?: number;
  /** `maxmemory` of every node, like {@link RedisOptions}. */
  maxmemory?: string;
  /** `maxmemory-policy` of every node. */
  maxmemoryPolicy?: string;
  /** More `redis-server` arguments for every node. */
  args?: string[];
  /** How long to wait for `cluster_state:ok` (default 60 s). */
  startTimeoutMs?: number;
}

/** A running Redis Cluster of masters without replicas. */
export interface RedisClusterService {
  /** `redis://127.0.0.1:P` of every node */
  urls: string[];
  /** The nodes' ports, in the order of `urls`. */
  ports: number[];
  /** Root temp dir (one `nodeN/` per node, each with `redis.log`). */
  dir: string;
  /** Stops every node and removes the temp dir. */
  stop(): Promise<void>;
}

/**
 * Starts a Redis Cluster of `masters` (default 3) nodes on free ports, joined with
 * `redis-cli --cluster create`, and waits until every node reports `cluster_state:ok`.
 */
export async function startRedisCluster(opts: RedisClusterOptions = {}): Promise<RedisClusterService> {
  await ensureRedis();
  const n = opts.masters ?? 3;
  if (n < 3) throw new Error("a Redis Cluster needs at least 3 masters");
  const timeoutMs = opts.startTimeoutMs ?? 60_000;
  const root = makeTempDir("redis-cluster");
  const nodes: (RedisNode & { dir: string; logFile: string; busPort: number })[] = [];
  let stopped = false;
  const svc: RedisClusterService = {
    urls: [],
    ports: [],
    dir: root,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      services.delete(svc);
      await Promise.all(nodes.map(async (nd) => (nd.child !== undefined ? terminate(nd.child, "SIGTERM", 5_000) : undefined)));
      await removeTempDir(root);
    },
  };
  services.add(svc);
  try {
    const { masters: _masters, startTimeoutMs: _timeout, ...nodeOpts } = opts;
    for (let i = 0; i < n; i++) {
      const dir = join(root, `node${i}`);
      mkdirSync(dir, { recursive: true });
      nodes.push({ port: await freePort(), busPort: await freePort(), child: undefined, dir, logFile: join(dir, "redis.log") });
    }
    await Promise.all(
      nodes.map((nd) =>
        bootRedis(
          nd,
          (port) =>
            redisArgs(port, nd.dir, nodeOpts, ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000", "--cluster-port", String(nd.busPort)]),
          nd.dir,
          nd.logFile,
          timeoutMs,
        ),
      ),
    );
    const create = await run(["redis-cli", "--cluster", "create", ...nodes.map((nd) => `${HOST}:${nd.port}`), "--cluster-replicas", "0", "--cluster-yes"], { timeoutMs });
    if (create.code !== 0 || !/All \d+ slots covered/.test(create.output)) {
      throw new ServiceStartError(`redis-cli --cluster create failed (exit ${create.code}):\n${create.output.split("\n").slice(-40).join("\n")}`, nodes[0]?.logFile);
    }
    for (const nd of nodes) {
      if (nd.child === undefined) continue;
      await waitReady(`redis cluster node ${HOST}:${nd.port}`, nd.child, timeoutMs, async () => {
        const info = await redisCommand(nd.port, ["CLUSTER", "INFO"]);
        return info.includes("cluster_state:ok") && info.includes(`cluster_known_nodes:${n}`) && info.includes("cluster_slots_ok:16384");
      });
    }
  } catch (e) {
    await svc.stop();
    throw e;
  }
  svc.ports = nodes.map((nd) => nd.port);
  svc.urls = nodes.map((nd) => `redis://${HOST}:${nd.port}`);
  return svc;
}

// ───────────────────────────── Kafka ─────────────────────────────

/** Options of {@link startKafka}. */
export interface KafkaOptions {
  /** Release line (`"4"` = newest 4.x, the default; `"3.9"`) or an exact `x.y.z`. */
  version?: KafkaLine | (string & {});
  /** JVM max heap in MiB (default 512). */
  heapMb?: number;
  /** Extra or overriding server.properties entries. */
  properties?: Record<string, string | number | boolean>;
  /** How long to wait for the broker to create a topic (default 90 s; jar download not included). */
  startTimeoutMs?: number;
}

/** A running single-node Kafka (KRaft, combined broker+controller). */
export interface KafkaService {
  /** `127.0.0.1:PORT` (a kafkajs `brokers` entry / `bootstrap.servers`). */
  brokers: string;
  /** PLAINTEXT listener port (same as in `brokers`). */
  port: number;
  /** CONTROLLER listener port (KRaft quorum). */
  controllerPort: number;
  /** Exact Kafka version, e.g. `4.4.0`. */
  version: string;
  /** Temp dir holding `server.properties`, `data/` and the logs. */
  dir: string;
  /** Broker log (stdout+stderr of the JVM). */
  logFile: string;
  /** Creates a topic (no-op if it exists) and waits until every partition has a leader. */
  createTopic(name: string, partitions?: number): Promise<void>;
  /** Deletes a topic (no-op if it does not exist). */
  deleteTopic(name: string): Promise<void>;
  /** Stops the broker, keeping its data dir and ports (controlled shutdown, or SIGKILL with `hard`). */
  stopServer(opts?: StopServerOptions): Promise<void>;
  /** Starts it again on the same data and ports; resolves once it can create a topic. */
  startServer(): Promise<void>;
  /** True while the broker process runs. */
  isRunning(): boolean;
  /** Stops the broker and removes its temp dir. */
  stop(): Promise<void>;
}

type KafkaJs = typeof import("kafkajs");

/** Runs `fn` with a connected kafkajs admin client, always disconnecting it. */
async function withAdmin<T>(brokers: string, fn: (admin: import("kafkajs").Admin) => Promise<T>): Promise<T> {
  const kafkajs: KafkaJs = await import("kafkajs");
  const kafka = new kafkajs.Kafka({
    clientId: "feature-store-test-harness",
    brokers: [brokers],
    logLevel: kafkajs.logLevel.NOTHING,
    connectionTimeout: 3_000,
    requestTimeout: 15_000,
    retry: { retries: 3, initialRetryTime: 200 },
  });
  const admin = kafka.admin();
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

async function kafkaCreateTopic(brokers: string, name: string, partitions: number, timeoutMs = 30_000): Promise<void> {
  await withAdmin(brokers, async (admin) => {
    const existing = await admin.listTopics();
    if (!existing.includes(name)) {
      try {
        // the leaders are awaited below: kafkajs's own wait gives up after a few metadata
        // retries when the broker is slow to know the new topic (a loaded machine)
        await admin.createTopics({ topics: [{ topic: name, numPartitions: partitions, replicationFactor: 1 }], waitForLeaders: false, timeout: timeoutMs });
      } catch (e) {
        if (!(e instanceof Error && /already exists/i.test(JSON.stringify(e) + e.message))) throw e;
      }
    }
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      // a broker that does not know the new topic yet answers UNKNOWN_TOPIC_OR_PARTITION: "not yet"
      const meta = await admin.fetchTopicMetadata({ topics: [name] }).catch((e: unknown) => {
        if ((e as { type?: unknown }).type === "UNKNOWN_TOPIC_OR_PARTITION") return { topics: [] };
        throw e;
      });
      const parts = meta.topics[0]?.partitions ?? [];
      if (parts.length > 0 && parts.every((p) => p.leader >= 0)) return;
      if (Date.now() > deadline) throw new Error(`topic ${name}: partitions have no leader after ${timeoutMs} ms`);
      await sleep(100);
    }
  });
}

function kafkaProperties(port: number, controllerPort: number, logDir: string, extra: Record<string, string | number | boolean>): string {
  const props: Record<string, string | number | boolean> = {
    "process.roles": "broker,controller",
    "node.id": 1,
    "controller.quorum.voters": `1@${HOST}:${controllerPort}`,
    listeners: `PLAINTEXT://${HOST}:${port},CONTROLLER://${HOST}:${controllerPort}`,
    "advertised.listeners": `PLAINTEXT://${HOST}:${port}`,
    "controller.listener.names": "CONTROLLER",
    "inter.broker.listener.name": "PLAINTEXT",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    "log.dirs": logDir,
    "num.partitions": 1,
    "default.replication.factor": 1,
    "min.insync.replicas": 1,
    "auto.create.topics.enable": false,
    "offsets.topic.replication.factor": 1,
    // One partition instead of 50: the first consumer group joins in well under a second.
    "offsets.topic.num.partitions": 1,
    "transaction.state.log.replication.factor": 1,
    "transaction.state.log.min.isr": 1,
    "transaction.state.log.num.partitions": 1,
    "share.coordinator.state.topic.replication.factor": 1,
    "share.coordinator.state.topic.min.isr": 1,
    "group.initial.rebalance.delay.ms": 0,
    // After a crash (SIGKILL) the restarted broker cannot register until the old
    // incarnation's session expires (default 9 s); keep that short for fault tests.
    "broker.session.timeout.ms": 4_000,
    "broker.heartbeat.interval.ms": 500,
    "num.network.threads": 2,
    "num.io.threads": 4,
    "log.retention.check.interval.ms": 60_000,
    ...extra,
  };
  return `${Object.entries(props)
    .map(([k, v]) => `${k}=${String(v)}`)
    .join("\n")}\n`;
}

/**
 * Starts a single-node Apache Kafka in KRaft mode (combined broker+controller) on free
 * ports. The jars come from Maven Central (first run downloads them; see kafka-jars.ts).
 * Resolves once the broker has created (and deleted) a probe topic.
 */
export async function startKafka(opts: KafkaOptions = {}): Promise<KafkaService> {
  const version = kafkaVersionFor(opts.version ?? "4");
  const jars = await resolveKafkaJars(version);
  await ensureJavaTools();
  const timeoutMs = opts.startTimeoutMs ?? 90_000;
  const heap = opts.heapMb ?? 512;
  const dir = makeTempDir("kafka");
  const logFile = join(dir, "kafka.log");
  const propsFile = join(dir, "server.properties");
  const logDir = join(dir, "data");
  let port = 0;
  let controllerPort = 0;
  let child: Child | undefined;
  let stopped = false;

  const javaCmd = (main: string, args: string[]): string[] => [
    "java",
    `-Xmx${heap}m`,
    "-Xms128m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:-UsePerfData",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
    "-Dorg.slf4j.simpleLogger.log.org.apache.kafka.common.config.AbstractConfig=warn",
    "-Dlog4j2.level=warn",
    "-cp",
    jars.classpath,
    main,
    ...args,
  ];
  const brokersOf = (): string => `${HOST}:${port}`;

  const probe = async (): Promise<boolean> => {
    if (!(await tcpOpen(port))) return false;
    const topic = `harness-probe-${randomBytes(4).toString("hex")}`;
    await kafkaCreateTopic(brokersOf(), topic, 1, 15_000);
    await withAdmin(brokersOf(), (admin) => admin.deleteTopics({ topics: [topic], timeout: 15_000 }));
    return true;
  };

  const bootOnce = async (): Promise<void> => {
    const c = launch(javaCmd("kafka.Kafka", [propsFile]), { cwd: dir, logFile, exitSignal: "SIGKILL" });
    child = c;
    await waitReady(`kafka ${version} on ${HOST}:${port}`, c, timeoutMs, probe, 500);
  };

  const svc: KafkaService = {
    brokers: "",
    port: 0,
    controllerPort: 0,
    version,
    dir,
    logFile,
    createTopic: (name: string, partitions = 1) => kafkaCreateTopic(brokersOf(), name, partitions),
    deleteTopic: (name: string) =>
      withAdmin(brokersOf(), async (admin) => {
        if ((await admin.listTopics()).includes(name)) await admin.deleteTopics({ topics: [name], timeout: 30_000 });
      }),
    stopServer: async (o: StopServerOptions = {}) => {
      if (child !== undefined) await terminate(child, o.hard === true ? "SIGKILL" : "SIGTERM", 30_000);
    },
    startServer: async () => {
      if (stopped) throw new Error("kafka service was stopped for good");
      if (child?.running() === true) return;
      await bootOnce();
    },
    isRunning: () => child?.running() === true,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      services.delete(svc);
      // The data is thrown away, so no controlled shutdown: a short grace, then SIGKILL.
      if (child !== undefined) await terminate(child, "SIGTERM", 3_000);
      await removeTempDir(dir);
    },
  };
  services.add(svc);

  try {
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      controllerPort = await freePort();
      rmSync(logDir, { recursive: true, force: true });
      writeFileSync(propsFile, kafkaProperties(port, controllerPort, logDir, opts.properties ?? {}));
      // A cluster id is 16 random bytes, base64url without padding (what `random-uuid` prints).
      // StorageTool reads a cluster id starting with "-" as an option
      let clusterId = randomBytes(16).toString("base64url");
      while (clusterId.startsWith("-")) clusterId = randomBytes(16).toString("base64url");
      const fmt = await run(javaCmd("kafka.tools.StorageTool", ["format", "-t", clusterId, "-c", propsFile]), { cwd: dir, timeoutMs: 120_000 });
      writeFileSync(join(dir, "format.log"), fmt.output);
      if (fmt.code !== 0) throw new ServiceStartError(`kafka ${version}: storage format failed (exit ${fmt.code})`, join(dir, "format.log"));
      try {
        await bootOnce();
        break;
      } catch (e) {
        if (child !== undefined) await terminate(child, "SIGKILL", 0);
        if (attempt < 3 && portClash(logFile)) continue;
        throw e;
      }
    }
  } catch (e) {
    await svc.stop();
    throw e;
  }
  svc.port = port;
  svc.controllerPort = controllerPort;
  svc.brokers = brokersOf();
  return svc;
}

// ───────────────────────────── CLI ─────────────────────────────

const CLI_USAGE = "usage: bun test/harness/services.ts <postgres|redis|redis-cluster|kafka>... [--kafka-version=4|3.9|x.y.z]";

async function cli(argv: string[]): Promise<void> {
  const names = argv.filter((a) => !a.startsWith("--"));
  const kv = argv.find((a) => a.startsWith("--kafka-version="))?.slice("--kafka-version=".length);
  if (names.length === 0 || names.some((n) => !["postgres", "redis", "redis-cluster", "kafka"].includes(n))) {
    console.error(CLI_USAGE);
    process.exit(2);
  }
  const lines: string[] = [];
  try {
    await Promise.all(
      [...new Set(names)].map(async (name) => {
        const t0 = performance.now();
        switch (name) {
          case "postgres": {
            const pg = await startPostgres();
            lines.push(`POSTGRES_URL=${pg.url}`);
            break;
          }
          case "redis": {
            const r = await startRedis();
            lines.push(`REDIS_URL=${r.url}`);
            break;
          }
          case "redis-cluster": {
            const c = await startRedisCluster();
            lines.push(`REDIS_CLUSTER_URLS=${c.urls.join(",")}`);
            break;
          }
          case "kafka": {
            const k = await startKafka({ version: kv ?? "4" });
            lines.push(`KAFKA_BROKERS=${k.brokers}`, `KAFKA_VERSION=${k.version}`);
            break;
          }
        }
        console.error(`# ${name} ready in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      }),
    );
  } catch (e) {
    console.error(e instanceof Error ? e.message : String(e));
    await stopAll();
    process.exit(1);
  }
  for (const l of lines) console.log(l);
  console.error("# running; stop with Ctrl-C / SIGTERM");
  // Keep the event loop alive; the signal hooks stop everything and exit.
  setInterval(() => {}, 1 << 30);
}

if (import.meta.main) {
  await cli(process.argv.slice(2));
}
