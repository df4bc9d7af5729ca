/**
 * Structured JSON logs (pino). Servers log to stdout; CLI commands log to stderr so their
 * stdout stays the command's output. Nothing logs a key or a request body.
 *
 * A server's logger (fd 1) starts without pino (loading it was a sixth of the CPU of a
 * server's start): until pino is needed, the lines of plain fields (strings, finite numbers,
 * booleans, null; no `err`, nothing redacted, no format arguments) are written by hand, byte
 * for byte what pino writes (test/unit/log.test.ts compares them), into the same buffer as the
 * access log, and handed to the destination (stdout) from there. pino is loaded at the first
 * line of any other shape only (loading it with the first flush made every online lookup of a
 * server at `info` ~5 us dearer, bench/steady-ab.ts); from then on every line goes through
 * pino (the access log still by hand). A process that exits before writes the buffer itself.
 */
import { write, writeSync } from "node:fs";
import type * as Pino from "pino";
import type { Logger } from "pino";

export type { Logger };

/** Longest a log line waits in the stdout buffer, ms. */
const FLUSH_INTERVAL_MS = 200;

/** Access-log lines gathered by {@link accessLogger}, written ahead of the logger's next line or flush. */
interface Pending {
  text: string;
}
/** Access-log text gathered before it is handed to the destination, characters. */
const ACCESS_BATCH_CHARS = 16_384;

type PinoModule = typeof Pino.default & typeof Pino;
/** pino, loaded on first use. */
const loadPino = (): PinoModule => require("pino") as PinoModule;

/** pino's options of every logger here, `pending` written ahead of each line (the log stays in order). */
function pinoOptions(level: string, pending: Pending, p: PinoModule): Pino.LoggerOptions<never, boolean> {
  return {
    level,
    base: { service: "feature-store" },
    timestamp: p.stdTimeFunctions.isoTime,
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
  };
}

/** A logger at `level`, writing JSON lines to fd 1 (servers) or fd 2 (CLI). */
export function createLogger(level: string, fd: 1 | 2 = 1): Logger {
  if (fd === 1) return new ServerLog(new ServerRoot(level), [], ',"service":"feature-store"') as unknown as Logger;
  const p = loadPino();
  const pending: Pending = { text: "" };
  return p(pinoOptions(level, pending, p), p.destination({ fd, sync: true, minLength: 0 }));
}

/** pino's numeric levels. */
const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Number.POSITIVE_INFINITY };

/** pino's JSON of a string (lib/tools.js `asString`). */
function asString(str: string): string {
  let result = "";
  let last = 0;
  let found = false;
  let point = 255;
  const l = str.length;
  if (l > 100) return JSON.stringify(str);
  for (let i = 0; i < l && point >= 32; i++) {
    point = str.charCodeAt(i);
    if (point === 34 || point === 92) {
      result += `${str.slice(last, i)}\\`;
      last = i;
      found = true;
    }
  }
  if (!found) result = str;
  else result += str.slice(last);
  return point < 32 ? JSON.stringify(str) : `"${result}"`;
}

/** Keys pino treats apart (message, level, time, the error serialiser, redaction). */
const SPECIAL_KEYS = new Set(["msg", "level", "time", "err", "key", "api_key", "headers"]);

/** `,"k":v` of an object of plain fields as pino writes them, or undefined when it is not one. */
function plainFields(o: unknown): string | undefined {
  if (o === null || typeof o !== "object") return undefined;
  const proto = Object.getPrototypeOf(o);
  if (proto !== Object.prototype && proto !== null) return undefined;
  let out = "";
  for (const k of Object.keys(o)) {
    if (SPECIAL_KEYS.has(k)) return undefined;
    const v = (o as Record<string, unknown>)[k];
    if (v === undefined) continue;
    let j: string;
    if (typeof v === "string") j = asString(v);
    else if (typeof v === "number" && Number.isFinite(v)) j = String(v);
    else if (typeof v === "boolean") j = String(v);
    else if (v === null) j = "null";
    else return undefined;
    out += `,${asString(k)}:${j}`;
  }
  return Object.getOwnPropertySymbols(o).length > 0 ? undefined : out;
}

/** Text gathered by {@link Stdout} before a write, characters (what sonic-boom's `minLength` was). */
const MIN_WRITE_CHARS = 4096;
/** Wait before retrying a write refused with EAGAIN (a full pipe), ms. */
const RETRY_MS = 10;

/**
 * A server's stdout: text gathered until MIN_WRITE_CHARS or a {@link flush}, encoded once and
 * written asynchronously, one write at a time (a partial write goes on with the rest; EAGAIN
 * retries a little later; any other failure drops that write: a closed stdout loses log lines,
 * never the server). It replaces pino.destination (sonic-boom), which encoded every write three
 * times (its length, the write, and again to cut what was written): that was ~5% of the CPU of
 * an online lookup at `info`. pino writes through it too (it only calls `write`).
 */
class Stdout {
  private pending = "";
  /** A write in flight. */
  private busy = false;

  constructor(private readonly fd: number) {}

  write(text: string): boolean {
    this.pending += text;
    if (!this.busy && this.pending.length >= MIN_WRITE_CHARS) this.next();
    return true;
  }

  /** Writes what is gathered (after the write in flight). */
  flush(): void {
    if (!this.busy) this.next();
  }

  private next(): void {
    if (this.pending === "") return;
    const bytes = Buffer.from(this.pending);
    this.pending = "";
    this.send(bytes);
  }

  private send(bytes: Uint8Array): void {
    this.busy = true;
    write(this.fd, bytes, 0, bytes.length, null, (err, n) => {
      if (err && (err.code === "EAGAIN" || err.code === "EBUSY")) {
        setTimeout(() => this.send(bytes), RETRY_MS);
        return;
      }
      if (!err && n < bytes.length) return this.send(bytes.subarray(n));
      this.busy = false;
      if (this.pending.length >= MIN_WRITE_CHARS) this.next();
    });
  }

  /**
   * Writes what is gathered now, and `more` after it, synchronously (on exit; a write in flight
   * finishes on its own). `more` is never handed to {@link write}, which could start an
   * asynchronous write of it that the exit would cut off.
   */
  flushSync(more = ""): void {
    let bytes: Uint8Array = Buffer.from(this.pending + more);
    this.pending = "";
    for (let tries = 0; bytes.length > 0 && tries < 1000; ) {
      try {
        bytes = bytes.subarray(writeSync(this.fd, bytes));
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== "EAGAIN" && code !== "EBUSY") return;
        tries++;
        Bun.sleepSync(1);
      }
    }
  }
}

/** What the loggers of one server share: the level, the buffer, and pino once loaded. */
class ServerRoot {
  readonly pending: Pending = { text: "" };
  levelValue: number;
  pino: Logger | undefined;
  private dest: Stdout | undefined;

  constructor(public level: string) {
    this.levelValue = LEVELS[level] ?? 30;
    // Lines are gathered into writes of at least 4 KiB (one write(2) per ~15 access-log lines
    // instead of one per line), and flushed at least every FLUSH_INTERVAL_MS so a quiet
    // process's lines still show up at once; what is left is written on exit.
    const timer = setInterval(() => {
      if (this.dest === undefined && this.pending.text === "") return;
      try {
        this.drain();
        this.dest?.flush();
      } catch {
        // a write in progress flushes by itself
      }
    }, FLUSH_INTERVAL_MS);
    timer.unref();
    process.once("exit", () => {
      try {
        if (this.dest === undefined) {
          if (this.pending.text !== "") writeSync(1, this.pending.text);
          this.pending.text = "";
          return;
        }
        const text = this.pending.text;
        this.pending.text = "";
        this.dest.flushSync(text);
      } catch {
        // nothing more can be done while exiting
      }
    });
  }

  /** The destination (stdout), made on first call; pino writes through it too once loaded. */
  private out(): Stdout {
    return (this.dest ??= new Stdout(1));
  }

  /** pino, loaded on first call (writing to {@link out}). */
  load(): Logger {
    if (this.pino === undefined) {
      const p = loadPino();
      this.pino = p(pinoOptions(this.level, this.pending, p), this.out());
    }
    return this.pino;
  }

  /** Hands the gathered lines to the destination (without loading pino: lines written by hand need none of it). */
  drain(): void {
    if (this.pending.text === "") return;
    const text = this.pending.text;
    this.pending.text = "";
    this.out().write(text);
  }
}

/** The subset of pino's Logger the server uses (see the module's comment). */
class ServerLog {
  private pinoChild: Logger | undefined;

  constructor(
    readonly root: ServerRoot,
    private readonly bindings: Record<string, unknown>[],
    /** pino's `chindings`: `,"service":"feature-store"` and the child's bindings */
    readonly chindings: string,
  ) {}

  /** This logger in pino (loading it). */
  private pino(): Logger {
    if (this.pinoChild === undefined) {
      let l = this.root.load();
      for (const b of this.bindings) l = l.child(b);
      this.pinoChild = l;
    }
    return this.pinoChild;
  }

  get level(): string {
    return this.root.level;
  }

  isLevelEnabled(level: string): boolean {
    return (LEVELS[level] ?? Number.POSITIVE_INFINITY) >= this.root.levelValue;
  }

  child(bindings: Record<string, unknown>): Logger {
    const fields = this.root.pino === undefined ? plainFields(bindings) : undefined;
    if (fields === undefined) return this.pino().child(bindings);
    return new ServerLog(this.root, [...this.bindings, bindings], this.chindings + fields) as unknown as Logger;
  }

  private write(label: string, args: unknown[]): void {
    const value = LEVELS[label] as number;
    if (value < this.root.levelValue) return;
    if (this.root.pino === undefined) {
      let fields: string | undefined = "";
      let msg: unknown;
      if (args.length === 1 && typeof args[0] === "string") msg = args[0];
      else if (args.length === 1 || (args.length === 2 && typeof args[1] === "string")) {
        fields = plainFields(args[0]);
        msg = args[1];
      } else fields = undefined;
      if (fields !== undefined) {
        const m = msg === undefined ? "" : `,"msg":${asString(msg as string)}`;
        this.root.pending.text += `{"level":"${label}","time":"${new Date(Date.now()).toISOString()}"${this.chindings}${fields}${m}}\n`;
        return;
      }
    }
    (this.pino()[label as "info"] as (...a: unknown[]) => void)(...args);
  }

  trace(...args: unknown[]): void {
    this.write("trace", args);
  }
  debug(...args: unknown[]): void {
    this.write("debug", args);
  }
  info(...args: unknown[]): void {
    this.write("info", args);
  }
  warn(...args: unknown[]): void {
    this.write("warn", args);
  }
  error(...args: unknown[]): void {
    this.write("error", args);
  }
  fatal(...args: unknown[]): void {
    this.write("fatal", args);
  }
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
  // A server's logger (fd 1) gathers the lines and hands them over ~16 KiB at a time (the
  // destination's per-write bookkeeping is then paid once per batch, not once per line).
  const server = (log as unknown) instanceof ServerLog ? (log as unknown as ServerLog) : undefined;
  const p = server === undefined ? loadPino() : undefined;
  const stream = p && (log as unknown as Record<symbol, { write(line: string): void } | undefined>)[p.symbols.streamSym];
  const chindings = server?.chindings ?? (p && (log as unknown as Record<symbol, string | undefined>)[p.symbols.chindingsSym]) ?? "";
  if (server === undefined && !stream) {
    // (a logger without pino's stream: `at` cannot be given to it, the line has the time it is written)
    return (requestId, method, route, status, durationMs) => {
      if (log.isLevelEnabled("info")) log.info({ request_id: requestId, method, route, status, duration_ms: durationMs }, "request");
    };
  }
  const batch = server?.root;
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
    if (batch === undefined) return void (stream as { write(line: string): void }).write(line);
    batch.pending.text += line;
    if (batch.pending.text.length >= ACCESS_BATCH_CHARS) batch.drain();
  };
}
