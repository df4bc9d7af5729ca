/**
 * Structured JSON logs (pino). Servers log to stdout; CLI commands log to stderr so their
 * stdout stays the command's output. Nothing logs a key or a request body.
 */
import pino, { type Logger } from "pino";

export type { Logger };

/** A logger at `level`, writing JSON lines to fd 1 (servers) or fd 2 (CLI). */
export function createLogger(level: string, fd: 1 | 2 = 1): Logger {
  return pino(
    {
      level,
      base: { service: "feature-store" },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: ["key", "api_key", "headers.authorization", 'headers["x-api-key"]'], censor: "[redacted]" },
    },
    // Servers: lines are gathered into writes of at least 4 KiB (one write(2) per ~15 access-log
    // lines instead of one per line); pino flushes what is left on exit.
    pino.destination({ fd, sync: fd === 2, minLength: fd === 1 ? 4096 : 0 }),
  );
}
