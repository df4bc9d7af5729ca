/**
 * The PostgreSQL client (postgres.js) as the backend configures it: int8 as JS numbers (every
 * bigint we store, ms times, seqs and ids, stays below 2^53), a server-side statement timeout,
 * fast failure while the server is down and fast recovery once it is back, TLS from the URL.
 *
 * Arrays travel as literals we build ourselves ({@link textArray} and friends, cast in SQL):
 * postgres.js only serialises arrays after fetching the server's array types on every new
 * connection, and a connection that breaks during that internal fetch leaves an unhandled
 * promise rejection behind, which ends a Bun process. So `fetch_types` is off.
 */
import { readFileSync } from "node:fs";
import type { ConnectionOptions } from "node:tls";
import postgres from "postgres";
import type { Logger } from "../../log.ts";
import { StoreUnavailable } from "../errors.ts";

/** int8 (oid 20) parsed as a number instead of postgres.js's default string. */
const int8 = {
  to: 20,
  from: [20],
  serialize: (x: number): string => String(x),
  parse: (x: string): number => Number(x),
};

/** A client with our type configuration. */
export type Sql = postgres.Sql<{ int8: number }>;
/** What runs a query: the pool or a transaction. */
export type Querier = postgres.ISql<{ int8: number }>;

/** Options of {@link createClient}. */
export interface ClientOptions {
  url: string;
  log: Logger;
  /** server-side `statement_timeout`, ms; also bounds the connect timeout */
  timeoutMs: number;
  /** pool size */
  max: number;
  /** keep one connection forever (the LISTEN connection) */
  dedicated?: boolean;
  /** `NOTIFY` deliveries (only meaningful on a dedicated connection) */
  onnotify?: (channel: string, payload: string) => void;
  /** a connection closed (for whatever reason) */
  onclose?: () => void;
}

const quoteText = (x: string): string => `"${x.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;

/** A PostgreSQL array literal of texts (`NULL` for null), for a `$n::text[]` parameter. */
export function textArray(xs: readonly (string | null)[]): string {
  return `{${xs.map((x) => (x === null ? "NULL" : quoteText(x))).join(",")}}`;
}

/** A PostgreSQL array literal of numbers (`NULL` for null), for `$n::bigint[]`, `int[]`, `float8[]`. */
export function numberArray(xs: readonly (number | null)[]): string {
  return `{${xs
    .map((x) => {
      if (x === null) return "NULL";
      if (!Number.isFinite(x)) throw new Error(`not a finite number: ${x}`);
      return String(x);
    })
    .join(",")}}`;
}

/** A PostgreSQL array literal of byte strings (hex form), for a `$n::bytea[]` parameter. */
export function byteaArray(xs: readonly Uint8Array[]): string {
  return `{${xs.map((x) => `"\\\\x${Buffer.from(x.buffer, x.byteOffset, x.byteLength).toString("hex")}"`).join(",")}}`;
}

/** libpq TLS parameters postgres.js does not understand; they must not reach the server. */
const TLS_FILE_PARAMS = ["sslrootcert", "sslcert", "sslkey"] as const;

/**
 * Splits libpq-style certificate file parameters off the URL and turns them into a tls
 * options object (postgres.js would otherwise send them as server settings, which fails).
 * `sslmode` keeps its libpq meaning: `require` encrypts without verifying, `verify-ca`
 * checks the chain only, `verify-full` (also when absent) the chain and the host name.
 */
export function tlsFromUrl(url: string): { url: string; ssl?: ConnectionOptions } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { url };
  }
  if (!TLS_FILE_PARAMS.some((p) => u.searchParams.has(p) && u.searchParams.get(p) !== "system")) return { url };
  const mode = u.searchParams.get("sslmode") ?? "verify-full";
  const read = (p: (typeof TLS_FILE_PARAMS)[number]): Buffer | undefined => {
    const path = u.searchParams.get(p);
    return path ? readFileSync(path) : undefined;
  };
  const ssl: ConnectionOptions = { ca: read("sslrootcert"), cert: read("sslcert"), key: read("sslkey") };
  if (mode === "require" || mode === "prefer" || mode === "allow") ssl.rejectUnauthorized = false;
  else if (mode === "verify-ca") ssl.checkServerIdentity = () => undefined;
  for (const p of [...TLS_FILE_PARAMS, "sslmode"]) u.searchParams.delete(p);
  return { url: u.toString(), ssl };
}

/** Opens a (lazily connecting) client. */
export function createClient(opts: ClientOptions): Sql {
  const { url, ssl } = tlsFromUrl(opts.url);
  const options = {
    max: opts.max,
    ...(ssl ? { ssl } : {}),
    types: { int8 },
    // A refused or unreachable server must fail a call within a few seconds, not hang.
    connect_timeout: Math.min(5, Math.max(1, Math.ceil(opts.timeoutMs / 1000))),
    // postgres.js backs off reconnects up to 20 s after repeated failures; cap it so a
    // restarted server is used again within half a second.
    backoff: (attempt: number) => Math.min(0.05 * attempt, 0.5),
    // The LISTEN connection lives as long as the process; pool connections are recycled.
    ...(opts.dedicated ? { max_lifetime: null } : { idle_timeout: 300 }),
    fetch_types: false,
    connection: {
      application_name: "feature-store",
      statement_timeout: opts.timeoutMs,
      // a transaction left open by a bug must not hold locks forever
      idle_in_transaction_session_timeout: Math.max(10_000, opts.timeoutMs * 5),
    },
    onnotice: (notice: postgres.Notice) => opts.log.debug({ notice: notice["message"] }, "postgres notice"),
    onclose: () => opts.onclose?.(),
    // postgres.js supports `onnotify` but its types omit it.
    onnotify: opts.onnotify,
  };
  return postgres(url, options);
}

/** postgres.js and Node socket error codes that mean the connection, not the query, failed. */
const CONNECTION_CODES = new Set([
  "CONNECTION_CLOSED", "CONNECTION_ENDED", "CONNECTION_DESTROYED", "CONNECT_TIMEOUT",
  "ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN",
]);

/**
 * SQLSTATEs of a server that cannot answer now (the same statement may succeed later): class 08
 * connection exceptions, 53 insufficient resources, 57P01-57P05 shutdown and crash recovery,
 * 57014 statement timeout, 40001 and 40P01 serialization failure and deadlock, 55P03 lock timeout.
 */
const TRANSIENT_SQLSTATE = /^(08...|53...|57P0[1-5]|57014|40001|40P01|55P03)$/;

/** True when `err` says the server or the connection is unavailable rather than the query wrong. */
export function isUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code !== "string") return false;
  return CONNECTION_CODES.has(code) || TRANSIENT_SQLSTATE.test(code);
}

/** The name PostgreSQL failures and logs are reported under. */
export const STORE_NAME = "postgres";

/**
 * Races `p` against the call timeout (the only timeout a call gets: callers add none). A
 * query still waiting in the pool's queue when the timer fires is taken out of it, so a slow
 * server does not get work nobody waits for (also one that was opening a new connection for
 * itself: scripts/patch-deps.ts hands that connection to the pool when it is ready). A query
 * already handed to a connection is left to the server's `statement_timeout` (every connection
 * has the call timeout as its own; the longer calls set theirs for their statements), never
 * cancelled from here: PostgreSQL's cancel request names a backend, not a query, so one that
 * arrives after the query finished cancels whatever the connection runs next, and postgres.js
 * pipelines the next caller's query right behind it (a spurious 503 for another request: seen
 * in the stalled-read test, session 8). The bound is per statement: queries given up while
 * pipelined behind a slow one on a busy connection still run in turn, each within its timeout.
 * A timeout, a lost connection or a server that cannot answer now becomes a
 * {@link StoreUnavailable}; any other error (a bug, a broken invariant) passes unchanged.
 */
export async function timed<T>(what: string, p: Promise<T> & { cancel?: () => unknown; state?: unknown }, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      // (postgres.js sets `state`, the backend's key, when it hands a query to a connection)
      if (p.cancel && !p.state) Promise.resolve(p.cancel()).catch(() => {});
      reject(new StoreUnavailable(STORE_NAME, `postgres ${what} timed out after ${ms} ms`));
    }, ms);
    timer.unref?.();
  });
  try {
    return await Promise.race([p, timeout]);
  } catch (err) {
    if (isUnavailable(err)) throw new StoreUnavailable(STORE_NAME, `postgres ${what} failed: ${(err as Error).message}`, { cause: err });
    throw err;
  } finally {
    clearTimeout(timer);
  }
}
