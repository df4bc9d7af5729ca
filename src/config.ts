/**
 * Every setting, in one zod schema. Sources, highest first: command-line flags, environment
 * variables, defaults. A secret-bearing variable X may be given as X_FILE (a path to a file
 * holding it). A bad value is reported as one line naming the variable.
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { availableParallelism } from "node:os";
import { z } from "@hono/zod-openapi";

const bool = z
  .string()
  .trim()
  .toLowerCase()
  .pipe(z.enum(["true", "false", "1", "0", "yes", "no", "on", "off", ""]))
  .transform((v) => ["true", "1", "yes", "on"].includes(v));

/**
 * A number from its text, in [min, max] (whole when `int`). The message says what is expected
 * (`expected an integer from 0 to 65535`), never how zod coerced it ("received NaN").
 */
function numeric(int: boolean, min: number, max = Number.POSITIVE_INFINITY) {
  const kind = int ? "an integer" : "a number";
  const expected = `expected ${kind} ${max === Number.POSITIVE_INFINITY ? `>= ${min}` : `from ${min} to ${max}`}`;
  return z
    .string()
    .trim()
    .transform((s, ctx) => {
      const n = s === "" ? Number.NaN : Number(s);
      if (!Number.isFinite(n) || (int && !Number.isInteger(n)) || n < min || n > max) {
        ctx.addIssue({ code: "custom", message: expected });
        return z.NEVER;
      }
      return n;
    });
}
/** A whole number in [min, max]. */
const intIn = (min: number, max?: number) => numeric(true, min, max);
const positiveInt = intIn(1);
const nonNegativeNumber = numeric(false, 0);
const nonNegativeInt = intIn(0);
const portNumber = intIn(0, 65535);

/** A DNS name (RFC 1123 labels; the last label is not all digits, so `999.1.1.1` is not a name). */
const HOST_NAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*(?!\d+\.?$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.?$/i;
const optionalUrl = (protocols: RegExp) =>
  z
    .string()
    .trim()
    .optional()
    .transform((v) => (v === "" ? undefined : v))
    .refine((v) => v === undefined || protocols.test(v), "not a valid URL for this store");

/** Milliseconds per duration unit; no unit means seconds. */
const DURATION_UNIT_MS: Record<string, number> = { ms: 1, "": 1000, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration, parsed to milliseconds: a number with a unit (`500ms`, `30s`, `5m`, `2h`, `1d`) or plain seconds (`300`). */
const duration = z
  .string()
  .trim()
  .toLowerCase()
  .regex(/^\d+(\.\d+)?(ms|s|m|h|d)?$/, "expected a duration such as 30s, 5m, 1h or 1d (a plain number is seconds)")
  .transform((v) => {
    const [, n, unit] = /^([\d.]+)([a-z]*)$/.exec(v) ?? [];
    return Math.round(Number(n) * (DURATION_UNIT_MS[unit ?? ""] ?? 1000));
  })
  .refine((ms) => Number.isSafeInteger(ms), "too long a duration");

/** The settings schema; keys are the environment variable names. */
export const ConfigSchema = z.object({
  /** HTTP port of `serve`. */
  PORT: portNumber.default(8000),
  /** Processes of `serve` listening together on PORT, the first supervising the others (flag --workers). Default: the number of cores. */
  SERVE_WORKERS: positiveInt.default(availableParallelism()),
  /** Address `serve` binds: an IPv4 or IPv6 address of this machine, or a host name resolving to one. */
  HOST: z
    .string()
    .trim()
    .refine((v) => isIP(v) !== 0 || HOST_NAME.test(v), "expected an IP address (0.0.0.0, 127.0.0.1, ::) or a host name")
    .default("0.0.0.0"),
  /** Directory of the embedded database (used when POSTGRES_URL is unset). */
  DATA_DIR: z.string().trim().min(1).default("./data"),
  /** PostgreSQL URL (`postgres://user:pass@host:5432/db?sslmode=require`); unset: embedded SQLite. */
  POSTGRES_URL: optionalUrl(/^postgres(ql)?:\/\//),
  /** Connections in this process's PostgreSQL pool (plus one for LISTEN); size it so pods x pool fits max_connections. */
  POSTGRES_POOL_SIZE: intIn(1, 1000).default(10),
  /** Redis URL (`redis://`, `rediss://`), or several comma-separated for a cluster; unset: in-process cache. */
  REDIS_URL: optionalUrl(/^rediss?:\/\//),
  /** Treat REDIS_URL as a Redis Cluster even when it names one node. */
  REDIS_CLUSTER: bool.default(false),
  /** Keep the values read from a single Redis server in a near cache in process, exact through client tracking (see README). */
  REDIS_NEAR_CACHE: bool.default(true),
  /** Log level: fatal, error, warn, info, debug, trace, silent. */
  LOG_LEVEL: z.string().trim().toLowerCase().pipe(z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"])).default("info"),
  /** Largest request body accepted, bytes (default 32 MiB). */
  BODY_LIMIT_BYTES: positiveInt.default(32 * 1024 * 1024),
  /** Longest graceful drain after SIGTERM, seconds. */
  SHUTDOWN_TIMEOUT: nonNegativeNumber.default(10),
  /** Seconds to keep serving (with /readyz at 503) after SIGTERM before the drain, for load balancers. */
  SHUTDOWN_DELAY: nonNegativeNumber.default(0),
  /** Timeout of one store call, milliseconds; a slower store answers 503. */
  STORE_TIMEOUT_MS: positiveInt.default(2000),
  /** Timeout of one bulk store read (the point-in-time lookups of batch and training data), milliseconds, in place of STORE_TIMEOUT_MS. */
  BULK_STORE_TIMEOUT_MS: positiveInt.default(30_000),
  /** Requests allowed per API key per RATE_LIMIT_WINDOW_MS (sliding window; shared by every server through Redis when REDIS_URL is set); 0: no limit. */
  RATE_LIMIT_PER_KEY: nonNegativeInt.default(0),
  /** Length of the rate-limit window, milliseconds. */
  RATE_LIMIT_WINDOW_MS: positiveInt.default(1000),
  /** API requests one server processes at once; more wait in a short queue, beyond it 503 (0: no limit). */
  MAX_IN_FLIGHT: nonNegativeInt.default(64),
  /** API requests that may wait for a slot when MAX_IN_FLIGHT are busy; more get 503 at once. */
  MAX_QUEUE: nonNegativeInt.default(1024),
  /** Longest an API request waits for a slot before a 503, milliseconds. */
  QUEUE_TIMEOUT_MS: positiveInt.default(100),
  /** Event-loop lag above which new API requests get 503 (the process is CPU-bound and they queue unseen), milliseconds (0: not watched). */
  MAX_EVENT_LOOP_LAG_MS: nonNegativeInt.default(200),
  /** Deadline of one API request from arrival (queueing included), milliseconds; a request still running then gets a 503 (0: none). */
  REQUEST_TIMEOUT_MS: nonNegativeInt.default(30_000),
  /** Worker threads of the bulk lane (training queries and writes run there, off the thread answering online lookups); 0: run them on that thread. Default: half the cores, at least 1. */
  BULK_WORKERS: intIn(0, 256).default(Math.max(1, Math.floor(availableParallelism() / 2))),
  /** Ask the kernel for a short time slice for the thread answering online lookups and SCHED_BATCH for the bulk lane's threads (Linux; refused or unsupported: nothing changes); false: the kernel's defaults. */
  THREAD_SCHEDULING: bool.default(true),
  /** Time slice asked for the thread answering online lookups, microseconds (the kernel keeps it within 100-100,000); 0: the kernel's default. */
  SERVING_SLICE_US: intIn(0, 100_000).default(100),
  /** Time slice asked for each bulk-lane thread, microseconds (the kernel keeps it within 100-100,000); 0: the kernel's default. */
  BULK_SLICE_US: intIn(0, 100_000).default(0),
  /** Training queries and writes one server runs at once (a streamed answer counts until its last chunk); more wait in the bulk queue (0: no limit). */
  BULK_MAX_IN_FLIGHT: nonNegativeInt.default(4),
  /** Training queries and writes that may wait for a bulk-lane slot; more get 503 at once. */
  BULK_MAX_QUEUE: nonNegativeInt.default(64),
  /** Longest a training query or write waits for a bulk-lane slot before a 503, milliseconds. */
  BULK_QUEUE_TIMEOUT_MS: positiveInt.default(10_000),
  /** Entries of the in-process online cache. */
  CACHE_MAX_ENTRIES: positiveInt.default(1_000_000),
  /** Latest event time accepted on a write or a stream event, ahead of this server's clock: a duration (`5m`, `30s`) or seconds (milliseconds once parsed); later ones are refused (400, DLQ). */
  MAX_FUTURE_SKEW: duration.default(5 * 60_000),
  /** Drop offline history partitions older than this many days (PostgreSQL); 0: keep forever. */
  RETENTION_DAYS: nonNegativeNumber.default(0),
  /** Kafka bootstrap brokers, comma-separated `host:port`. */
  KAFKA_BROKERS: z.string().trim().optional(),
  /** Tenants whose events the worker accepts, comma-separated. */
  KAFKA_TENANTS: z.string().trim().optional(),
  /** Topic the worker consumes. */
  KAFKA_TOPIC: z.string().trim().min(1).default("feature-events"),
  /** Consumer group of the worker. */
  KAFKA_GROUP_ID: z.string().trim().min(1).default("feature-store"),
  /** Dead-letter topic for invalid events. */
  KAFKA_DLQ_TOPIC: z.string().trim().min(1).default("feature-events-dlq"),
  /** Use TLS to the brokers. */
  KAFKA_SSL: bool.default(false),
  /** SASL mechanism: plain, scram-sha-256, scram-sha-512 (unset: no SASL). */
  KAFKA_SASL_MECHANISM: z.string().trim().toLowerCase().pipe(z.enum(["plain", "scram-sha-256", "scram-sha-512"])).optional(),
  /** SASL user name. */
  KAFKA_SASL_USERNAME: z.string().optional(),
  /** SASL password. */
  KAFKA_SASL_PASSWORD: z.string().optional(),
  /** Consumer group session timeout of the worker, ms: a worker that died loses its partitions after this long. */
  KAFKA_SESSION_TIMEOUT_MS: intIn(1000, 3_600_000).default(30_000),
  /** Port of the worker's /metrics and /healthz. */
  WORKER_METRICS_PORT: portNumber.default(9464),
  /** Largest batch the worker stores in one transaction (messages). */
  WORKER_BATCH_SIZE: positiveInt.default(1000),
  /** Longest the worker waits to fill a batch, milliseconds. */
  WORKER_BATCH_WAIT_MS: positiveInt.default(50),
  /** Longest the worker keeps retrying a store or dead-letter write that fails for an outage before it exits 1, seconds. */
  WORKER_RETRY_LIMIT_SECONDS: positiveInt.default(600),
});

/** Validated settings. */
export type Config = z.infer<typeof ConfigSchema>;

/** Variables that may be given as `X_FILE`. */
const SECRET_VARS = ["POSTGRES_URL", "REDIS_URL", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"] as const;

/** A configuration error: one line, naming the variable. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/**
 * Builds the configuration from flags (already mapped to variable names) over the environment.
 * Throws {@link ConfigError} with a one-line message on the first bad value.
 */
export function loadConfig(env: Record<string, string | undefined>, flags: Partial<Record<keyof Config, string>> = {}): Config {
  const raw: Record<string, string | undefined> = {};
  for (const key of Object.keys(ConfigSchema.shape) as (keyof Config)[]) {
    const v = flags[key] ?? env[key];
    raw[key] = v === "" && key !== "REDIS_URL" && key !== "POSTGRES_URL" ? undefined : v;
  }
  for (const key of SECRET_VARS) {
    const file = env[`${key}_FILE`];
    if (raw[key] === undefined && file) {
      try {
        raw[key] = readFileSync(file, "utf8").trim();
      } catch (e) {
        throw new ConfigError(`${key}_FILE: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
      }
    }
  }
  const r = ConfigSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    const name = String(issue?.path[0] ?? "configuration");
    // a value given as a flag is blamed on the flag the user typed (--port), not on PORT
    const label = flags[name as keyof Config] !== undefined ? flagName(name) : name;
    const shown = SECRET_VARS.includes(name as (typeof SECRET_VARS)[number]) ? "" : `, got ${JSON.stringify(raw[name])}`;
    throw new ConfigError(`${label}: ${issue ? describeIssue(issue) : "invalid"}${shown}`);
  }
  return r.data;
}

/** The command-line flag that sets variable `name` (`PORT` -> `--port`). */
function flagName(name: string): string {
  return `--${name.toLowerCase().replaceAll("_", "-")}`;
}

/** A zod issue as a user reads it: what is expected, without zod's own wording ("Invalid input: ..."). */
function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === "invalid_type" && issue.expected === "number") return "expected a number";
  if (issue.code === "invalid_value") return `expected one of ${issue.values.map((v) => String(v)).filter((v) => v !== "").join(", ")}`;
  return issue.message.replace(/^Invalid input: /, "");
}
