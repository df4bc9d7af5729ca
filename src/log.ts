/**
 * Structured JSON logs (pino). Servers log to stdout; CLI commands log to stderr so their
 * stdout stays the command's output. Nothing logs a key or a request body.
 */
import pino, { type Logger } from "pino";

export type { Logger };

/** Longest a log line waits in the stdout buffer, ms. */
const FLUSH_INTERVAL_MS = 200;

/** A logger at `level`, writing JSON lines to fd 1 (servers) or fd 2 (CLI). */
export function createLogger(level: string, fd: 1 | 2 = 1): Logger {
  // Servers: lines are gathered into writes of at least 4 KiB (one write(2) per ~15 access-log
  // lines instead of one per line), and flushed at least every FLUSH_INTERVAL_MS so a quiet
  // process's lines still show up at once; pino flushes what is left on exit.
  const dest = pino.destination({ fd, sync: fd === 2, minLength: fd === 1 ? 4096 : 0 });
  if (fd === 1) {
    const timer = setInterval(() => {
      try {
        dest.flush();
      } catch {
        // a write in progress flushes by itself
      }
    }, FLUSH_INTERVAL_MS);
    timer.unref();
  }
  return pino(
    {
      level,
      base: { service: "feature-store" },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: ["key", "api_key", "headers.authorization", 'headers["x-api-key"]'], censor: "[redacted]" },
    },
    dest,
  );
}

/** Writes the access-log line of one request (see {@link accessLogger}). */
export type AccessLog = (requestId: string | undefined, method: string, route: string, status: number, durationMs: number) => void;

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
    return (requestId, method, route, status, durationMs) => {
      if (log.isLevelEnabled("info")) log.info({ request_id: requestId, method, route, status, duration_ms: durationMs }, "request");
    };
  }
  return (requestId, method, route, status, durationMs) => {
    if (!log.isLevelEnabled("info")) return;
    const id = requestId === undefined ? "" : `,"request_id":${JSON.stringify(requestId)}`;
    stream.write(
      `{"level":"info","time":"${new Date().toISOString()}"${chindings}${id},"method":${JSON.stringify(method)},"route":${JSON.stringify(route)},"status":${status},"duration_ms":${durationMs},"msg":"request"}\n`,
    );
  };
}
