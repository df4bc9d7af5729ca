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
