/**
 * The settings of src/config.ts read without zod, for the start of `serve` (building the zod
 * schema and parsing with it was a sixth of the CPU of a start). Each field reads its text
 * exactly as its zod schema in ConfigSchema does (trim, case, range, default) and gives the same
 * value; a value it does not accept makes {@link fastConfig} answer `undefined`, and the caller
 * reads the settings with src/config.ts's `loadConfig`, whose error names the variable.
 * test/unit/settings.test.ts compares both on a corpus of values of every field.
 */
import { readFileSync } from "node:fs";
import { isIP } from "./lib/ip.ts";
import { availableParallelism } from "node:os";
import type { Config } from "./config.ts";

/** One field: its text (undefined when unset) to its value, or {@link BAD} when zod would refuse it. */
type Field = (v: string | undefined) => unknown;
const BAD = Symbol("bad");

/** zod's `numeric(int, min, max)` of config.ts, with its default. */
const num =
  (int: boolean, min: number, max: number, dflt: number): Field =>
  (v) => {
    if (v === undefined) return dflt;
    const s = v.trim();
    const n = s === "" ? Number.NaN : Number(s);
    return !Number.isFinite(n) || (int && !Number.isInteger(n)) || n < min || n > max ? BAD : n;
  };
const INF = Number.POSITIVE_INFINITY;
const int = (min: number, max: number, dflt: number) => num(true, min, max, dflt);

const BOOL_TEXT = ["true", "false", "1", "0", "yes", "no", "on", "off", ""];
const bool =
  (dflt: boolean): Field =>
  (v) => {
    if (v === undefined) return dflt;
    const s = v.trim().toLowerCase();
    return BOOL_TEXT.includes(s) ? ["true", "1", "yes", "on"].includes(s) : BAD;
  };

const oneOf =
  (values: readonly string[], dflt: string | undefined): Field =>
  (v) => {
    if (v === undefined) return dflt;
    const s = v.trim().toLowerCase();
    return values.includes(s) ? s : BAD;
  };

/** `z.string().trim().min(1).default(d)` */
const name =
  (dflt: string): Field =>
  (v) => {
    if (v === undefined) return dflt;
    const s = v.trim();
    return s.length >= 1 ? s : BAD;
  };

/** `z.string().trim().optional()` (trimmed) or `z.string().optional()` (as given) */
const text =
  (trim: boolean): Field =>
  (v) =>
    v === undefined ? undefined : trim ? v.trim() : v;

/** config.ts's `optionalUrl` */
const url =
  (protocols: RegExp): Field =>
  (v) => {
    if (v === undefined) return undefined;
    const s = v.trim();
    if (s === "") return undefined;
    return protocols.test(s) ? s : BAD;
  };

/** The same expression as config.ts's HOST_NAME. */
const HOST_NAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*(?!\d+\.?$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.?$/i;
const host: Field = (v) => {
  if (v === undefined) return "0.0.0.0";
  const s = v.trim();
  return isIP(s) !== 0 || HOST_NAME.test(s) ? s : BAD;
};

const DURATION_UNIT_MS: Record<string, number> = { ms: 1, "": 1000, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
/** config.ts's `duration` (milliseconds) */
const duration =
  (dflt: number): Field =>
  (v) => {
    if (v === undefined) return dflt;
    const s = v.trim().toLowerCase();
    if (!/^\d+(\.\d+)?(ms|s|m|h|d)?$/.test(s)) return BAD;
    const [, n, unit] = /^([\d.]+)([a-z]*)$/.exec(s) ?? [];
    const ms = Math.round(Number(n) * (DURATION_UNIT_MS[unit ?? ""] ?? 1000));
    return Number.isSafeInteger(ms) ? ms : BAD;
  };

/** Every field of ConfigSchema, in its order (the test checks names and order). */
const FIELDS: Record<keyof Config, Field> = {
  PORT: int(0, 65535, 8000),
  SERVE_WORKERS: int(1, INF, availableParallelism()),
  HOST: host,
  DATA_DIR: name("./data"),
  POSTGRES_URL: url(/^postgres(ql)?:\/\//),
  POSTGRES_POOL_SIZE: int(1, 1000, 10),
  REDIS_URL: url(/^rediss?:\/\//),
  REDIS_CLUSTER: bool(false),
  REDIS_NEAR_CACHE: bool(true),
  LOG_LEVEL: oneOf(["fatal", "error", "warn", "info", "debug", "trace", "silent"], "info"),
  BODY_LIMIT_BYTES: int(1, INF, 32 * 1024 * 1024),
  SHUTDOWN_TIMEOUT: num(false, 0, INF, 10),
  SHUTDOWN_DELAY: num(false, 0, INF, 0),
  STORE_TIMEOUT_MS: int(1, INF, 2000),
  BULK_STORE_TIMEOUT_MS: int(1, INF, 30_000),
  RATE_LIMIT_PER_KEY: int(0, INF, 0),
  RATE_LIMIT_WINDOW_MS: int(1, INF, 1000),
  MAX_IN_FLIGHT: int(0, INF, 64),
  MAX_QUEUE: int(0, INF, 1024),
  QUEUE_TIMEOUT_MS: int(1, INF, 100),
  MAX_EVENT_LOOP_LAG_MS: int(0, INF, 200),
  REQUEST_TIMEOUT_MS: int(0, INF, 30_000),
  BULK_WORKERS: int(0, 256, Math.max(1, Math.floor(availableParallelism() / 2))),
  THREAD_SCHEDULING: bool(true),
  SERVING_SLICE_US: int(0, 100_000, 100),
  BULK_SLICE_US: int(0, 100_000, 0),
  BULK_MAX_IN_FLIGHT: int(0, INF, 4),
  BULK_MAX_QUEUE: int(0, INF, 64),
  BULK_QUEUE_TIMEOUT_MS: int(1, INF, 10_000),
  CACHE_MAX_ENTRIES: int(1, INF, 1_000_000),
  MAX_FUTURE_SKEW: duration(5 * 60_000),
  RETENTION_DAYS: num(false, 0, INF, 0),
  KAFKA_BROKERS: text(true),
  KAFKA_TENANTS: text(true),
  KAFKA_TOPIC: name("feature-events"),
  KAFKA_GROUP_ID: name("feature-store"),
  KAFKA_DLQ_TOPIC: name("feature-events-dlq"),
  KAFKA_SSL: bool(false),
  KAFKA_SASL_MECHANISM: oneOf(["plain", "scram-sha-256", "scram-sha-512"], undefined),
  KAFKA_SASL_USERNAME: text(false),
  KAFKA_SASL_PASSWORD: text(false),
  KAFKA_SESSION_TIMEOUT_MS: int(1000, 3_600_000, 30_000),
  WORKER_METRICS_PORT: int(0, 65535, 9464),
  WORKER_BATCH_SIZE: int(1, INF, 1000),
  WORKER_BATCH_WAIT_MS: int(1, INF, 50),
  WORKER_RETRY_LIMIT_SECONDS: int(1, INF, 600),
};

/** The names of every setting, in ConfigSchema's order. */
export const SETTING_NAMES = Object.keys(FIELDS) as (keyof Config)[];

/** Variables that may be given as `X_FILE` (the same list as config.ts's SECRET_VARS). */
const SECRETS = ["POSTGRES_URL", "REDIS_URL", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"] as const;

/**
 * The settings from flags over the environment, as `loadConfig(env, flags)` reads them, or
 * `undefined` when any value (or an `X_FILE`) is one `loadConfig` refuses: call it for the error.
 */
export function fastConfig(env: Record<string, string | undefined>, flags: Partial<Record<keyof Config, string>> = {}): Config | undefined {
  const raw: Record<string, string | undefined> = {};
  for (const key of SETTING_NAMES) {
    const v = flags[key] ?? env[key];
    raw[key] = v === "" && key !== "REDIS_URL" && key !== "POSTGRES_URL" ? undefined : v;
  }
  for (const key of SECRETS) {
    const file = env[`${key}_FILE`];
    if (raw[key] === undefined && file) {
      try {
        raw[key] = readFileSync(file, "utf8").trim();
      } catch {
        return undefined;
      }
    }
  }
  const out: Record<string, unknown> = {};
  for (const key of SETTING_NAMES) {
    const v = FIELDS[key](raw[key]);
    if (v === BAD) return undefined;
    out[key] = v;
  }
  return out as Config;
}
