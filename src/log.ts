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
  /** Appends to `text` the lines of the requests recorded but not yet formatted (a server's, {@link AccessRecords}). */
  settle?: () => void;
}
/** Access-log requests recorded before their lines are formatted and handed to the destination. */
const ACCESS_BATCH_LINES = 256;

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
        pending.settle?.();
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
const INFO = 30;
/** "000" to "999": the milliseconds of an ISO time. */
const MILLIS = Array.from({ length: 1000 }, (_, i) => String(i).padStart(3, "0"));

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
  /** Requests of the access log not yet formatted (see {@link accessLogger}). */
  readonly access = new AccessRecords(this.pending);
  levelValue: number;
  pino: Logger | undefined;
  private dest: Stdout | undefined;

  constructor(public level: string) {
    this.levelValue = LEVELS[level] ?? 30;
    this.pending.settle = () => this.access.format();
    // Lines are gathered into writes of at least 4 KiB (one write(2) per ~15 access-log lines
    // instead of one per line), and flushed at least every FLUSH_INTERVAL_MS so a quiet
    // process's lines still show up at once; what is left is written on exit.
    const timer = setInterval(() => {
      this.access.format();
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
        this.access.format();
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
    this.access.format();
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
        this.root.access.format();
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
 * The text of access-log lines: the very line `log.info({request_id, method, route, status,
 * duration_ms}, "request")` writes, with the JSON of the few methods and route templates memoised,
 * and the time's text up to the second made once a second (the milliseconds appended from a
 * table: at a few thousand requests a second nearly every line is in a new millisecond).
 */
class AccessLines {
  private readonly jsonOf = new Map<string, string>();
  private lastSecond = Number.NaN;
  private secondText = "";

  private json(s: string): string {
    let j = this.jsonOf.get(s);
    if (j === undefined) {
      j = JSON.stringify(s);
      if (this.jsonOf.size < 1024) this.jsonOf.set(s, j);
    }
    return j;
  }

  /** `new Date(ms).toISOString()`. */
  private time(ms: number): string {
    const second = Math.floor(ms / 1000);
    if (second !== this.lastSecond) {
      const iso = new Date(second * 1000).toISOString();
      if (!iso.endsWith(".000Z")) return new Date(ms).toISOString(); // (never for a valid time)
      this.lastSecond = second;
      this.secondText = iso.slice(0, -4);
    }
    return `${this.secondText}${MILLIS[ms - second * 1000] ?? new Date(ms).toISOString().slice(-4, -1)}Z`;
  }

  line(at: number, chindings: string, requestId: string | undefined, method: string, route: string, status: number, durationMs: number): string {
    const id = requestId === undefined ? "" : `,"request_id":${JSON.stringify(requestId)}`;
    return `{"level":"info","time":"${this.time(at)}"${chindings}${id},"method":${this.json(method)},"route":${this.json(route)},"status":${status},"duration_ms":${durationMs},"msg":"request"}\n`;
  }
}

/**
 * The access log of a server's loggers: each request's fields are recorded (a few array stores),
 * and their lines are formatted together, ahead of the next line of any other kind, when
 * ACCESS_BATCH_LINES are recorded, at each flush and on exit, then handed to the destination
 * (~64 KiB at a time, so its per-write bookkeeping is paid once per batch). Formatting a
 * batch in one loop costs less than a line at a time between requests (`bench/profile.ts`
 * online_1x10: the access log ~8% -> ~5% of the server's CPU).
 */
class AccessRecords {
  private readonly lines = new AccessLines();
  private count = 0;
  private readonly at: number[] = [];
  private readonly chindings: string[] = [];
  private readonly ids: (string | undefined)[] = [];
  private readonly methods: string[] = [];
  private readonly routes: string[] = [];
  private readonly statuses: number[] = [];
  private readonly durations: number[] = [];

  constructor(private readonly pending: Pending) {}

  /** Records one request's line; true when the batch is full (the caller drains it). */
  add(at: number, chindings: string, requestId: string | undefined, method: string, route: string, status: number, durationMs: number): boolean {
    const i = this.count++;
    this.at[i] = at;
    this.chindings[i] = chindings;
    this.ids[i] = requestId;
    this.methods[i] = method;
    this.routes[i] = route;
    this.statuses[i] = status;
    this.durations[i] = durationMs;
    return this.count >= ACCESS_BATCH_LINES;
  }

  /** Appends the lines of the requests recorded to the pending text, in order. */
  format(): void {
    const n = this.count;
    if (n === 0) return;
    this.count = 0;
    let text = "";
    for (let i = 0; i < n; i++) {
      text += this.lines.line(this.at[i] as number, this.chindings[i] as string, this.ids[i], this.methods[i] as string, this.routes[i] as string, this.statuses[i] as number, this.durations[i] as number);
      this.ids[i] = undefined;
    }
    this.pending.text += text;
  }
}

/**
 * The access log of `log`: the very line `log.info({request_id, method, route, status,
 * duration_ms}, "request")` writes, built directly and written to the same destination. pino's
 * generic path (redaction, serialisers, JSON of the object) was ~8% of the CPU of an online
 * lookup; these five fields need none of it (none is redacted). Nothing is written when `info`
 * is not enabled. A server's logger (fd 1) records the requests and formats their lines in
 * batches ({@link AccessRecords}).
 */
export function accessLogger(log: Logger): AccessLog {
  const server = (log as unknown) instanceof ServerLog ? (log as unknown as ServerLog) : undefined;
  if (server !== undefined) {
    const root = server.root;
    const chindings = server.chindings;
    return (requestId, method, route, status, durationMs, at) => {
      if (root.levelValue > INFO) return;
      if (root.access.add(at ?? Date.now(), chindings, requestId, method, route, status, durationMs)) root.drain();
    };
  }
  const p = loadPino();
  const stream = (log as unknown as Record<symbol, { write(line: string): void } | undefined>)[p.symbols.streamSym];
  if (!stream) {
    // (a logger without pino's stream: `at` cannot be given to it, the line has the time it is written)
    return (requestId, method, route, status, durationMs) => {
      if (log.isLevelEnabled("info")) log.info({ request_id: requestId, method, route, status, duration_ms: durationMs }, "request");
    };
  }
  const chindings = (log as unknown as Record<symbol, string | undefined>)[p.symbols.chindingsSym] ?? "";
  const lines = new AccessLines();
  return (requestId, method, route, status, durationMs, at) => {
    if (log.isLevelEnabled("info")) stream.write(lines.line(at ?? Date.now(), chindings, requestId, method, route, status, durationMs));
  };
}
