/**
 * Structured JSON logs (pino). Servers log to stdout; CLI commands log to stderr so their
 * stdout stays the command's output. Nothing logs a key or a request body.
 */
import pino, { type Logger } from "pino";

export type { Logger };

/** Longest a log line waits in the stdout buffer, ms. */
const FLUSH_INTERVAL_MS = 200;

/** Access-log lines gathered by {@link accessLogger}, written ahead of the logger's next line or flush. */
interface Pending {
  text: string;
}
const pendingSym = Symbol("feature-store.pendingAccessLines");
/** Access-log text gathered before it is handed to the destination, characters. */
const ACCESS_BATCH_CHARS = 16_384;

/** A logger at `level`, writing JSON lines to fd 1 (servers) or fd 2 (CLI). */
export function createLogger(level: string, fd: 1 | 2 = 1): Logger {
  // Servers: lines are gathered into writes of at least 4 KiB (one write(2) per ~15 access-log
  // lines instead of one per line), and flushed at least every FLUSH_INTERVAL_MS so a quiet
  // process's lines still show up at once; pino flushes what is left on exit.
  const dest = pino.destination({ fd, sync: fd === 2, minLength: fd === 1 ? 4096 : 0 });
  const pending: Pending = { text: "" };
  const drain = (): void => {
    if (pending.text === "") return;
    const text = pending.text;
    pending.text = "";
    dest.write(text);
  };
  if (fd === 1) {
    const timer = setInterval(() => {
      try {
        drain();
        dest.flush();
      } catch {
        // a write in progress flushes by itself
      }
    }, FLUSH_INTERVAL_MS);
    timer.unref();
    process.once("exit", () => {
      try {
        drain();
        dest.flushSync();
      } catch {
        // nothing more can be done while exiting
      }
    });
  }
  const logger = pino(
    {
      level,
      base: { service: "feature-store" },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: ["key", "api_key", "headers.authorization", 'headers["x-api-key"]'], censor: "[redacted]" },
      // gathered access-log lines go out first: the log stays in order
      hooks: {
        streamWrite: (line) => {
          if (pending.text === "") return line;
          const text = pending.text + line;
          pending.text = "";
          return text;
        },
      },
    },
    dest,
  );
  if (fd === 1) Object.defineProperty(logger, pendingSym, { value: { pending, drain } });
  return logger;
}
/**
 * Writes the access-log line of one request (see {@link accessLogger}); `at` is the time of the
 * line, ms since the epoch (default now: a request answered before the logger existed is logged
 * later with the time it was answered).
 */
export type AccessLog = (requestId: string | undefined, method: string, route: string, status: number, durationMs: number, at?: number) => void;

/**
 * The access log of `log`: the very line `log.info({request_id, method, route, status,
 * duration_ms}, "request")` writes, built directly and written to the same destination. pino's
 * generic path (redaction, serialisers, JSON of the object) was ~8% of the CPU of an online
 * lookup; these five fields need none of it (none is redacted). Nothing is written when `info`
 * is not enabled.
 */
export function accessLogger(log: Logger): AccessLog {
  const stream = (log as unknown as Record<symbol, { write(line: string): void } | undefined>)[pino.symbols.streamSym];
  const chindings = (log as unknown as Record<symbol, string | undefined>)[pino.symbols.chindingsSym] ?? "";
  if (!stream) {
    // (a logger without pino's stream: `at` cannot be given to it, the line has the time it is written)
    return (requestId, method, route, status, durationMs) => {
      if (log.isLevelEnabled("info")) log.info({ request_id: requestId, method, route, status, duration_ms: durationMs }, "request");
    };
  }
  // A server's logger (fd 1) gathers the lines and hands them over ~16 KiB at a time (the
  // destination's per-write bookkeeping is then paid once per batch, not once per line).
  const batch = (log as unknown as Record<symbol, { pending: Pending; drain: () => void } | undefined>)[pendingSym];
  // the JSON of the few methods and route templates, and of the time (one per millisecond), memoised
  const jsonOf = new Map<string, string>();
  const json = (s: string): string => {
    let j = jsonOf.get(s);
    if (j === undefined) {
      j = JSON.stringify(s);
      if (jsonOf.size < 1024) jsonOf.set(s, j);
    }
    return j;
  };
  let lastMs = Number.NaN;
  let lastTime = "";
  return (requestId, method, route, status, durationMs, at) => {
    if (!log.isLevelEnabled("info")) return;
    const id = requestId === undefined ? "" : `,"request_id":${JSON.stringify(requestId)}`;
    const ms = at ?? Date.now();
    if (ms !== lastMs) {
      lastMs = ms;
      lastTime = new Date(ms).toISOString();
    }
    const line = `{"level":"info","time":"${lastTime}"${chindings}${id},"method":${json(method)},"route":${json(route)},"status":${status},"duration_ms":${durationMs},"msg":"request"}\n`;
    if (batch === undefined) return void stream.write(line);
    batch.pending.text += line;
    if (batch.pending.text.length >= ACCESS_BATCH_CHARS) batch.drain();
  };
}
