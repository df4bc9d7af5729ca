/**
 * The generation protocol of the Redis online store (the outage safety described in cache.ts):
 * which generation this process reads and writes, when it may read Redis at all (not dirty, not
 * quarantined), and the poll that follows the generation or, after a lost write, advances it.
 */
import { ErrorReply } from "redis";
import type { Logger } from "../../log.ts";
import type { RedisCacheMetrics } from "../../metrics.ts";
import { TimeoutError, withTimeout } from "../../lib/timeout.ts";
import type { RedisConnection } from "./connection.ts";
import { asGeneration, evalScript, GEN_SCRIPT, GEN_SHA } from "./scripts.ts";

/** Consecutive poll timeouts after which the connection is rebuilt. */
const RESET_AFTER_TIMEOUTS = 3;

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Options of {@link CacheGeneration}. */
export interface GenerationOptions {
  /** the generation key (`<ns>:gen`) */
  key: string;
  log: Logger;
  timeoutMs: number;
  pollMs: number;
  quarantineMs: number;
  metrics: RedisCacheMetrics;
  /** Called when the generation this process follows changes (its older entries are unreachable). */
  onChange?: () => void;
}

/** One process's view of the cache generation; see the module comment. */
export class CacheGeneration {
  readonly metrics: RedisCacheMetrics;
  private readonly key: string;
  private readonly log: Logger;
  private readonly timeoutMs: number;
  private readonly pollMs: number;
  private readonly quarantineMs: number;
  private readonly onChange: (() => void) | undefined;
  private conn!: RedisConnection;

  private gen = 0;
  /** A write was lost to the cache: advance the generation before using Redis again. */
  private dirty = false;
  /** Writes lost so far (to tell whether one was lost while a bump was in flight). */
  private writesLost = 0;
  /** Reads need a successful poll that started at or after this time (ms). */
  private quarantineUntil = 0;
  /** Start time of the last successful poll (ms). */
  private goodPollStart = Number.NEGATIVE_INFINITY;
  private failing = false;
  private consecutiveTimeouts = 0;
  private closed = false;
  private polling = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private onFirstReady: (() => void) | undefined;
  private readonly firstReady: Promise<void>;

  constructor(opts: GenerationOptions) {
    this.key = opts.key;
    this.log = opts.log;
    this.timeoutMs = opts.timeoutMs;
    this.pollMs = opts.pollMs;
    this.quarantineMs = opts.quarantineMs;
    this.metrics = opts.metrics;
    this.onChange = opts.onChange;
    this.metrics.available.set(0);
    this.firstReady = new Promise<void>((resolve) => {
      this.onFirstReady = resolve;
    });
  }

  /** The connection the protocol runs on (set once, right after it is opened). */
  attach(conn: RedisConnection): void {
    this.conn = conn;
  }

  /** Waits up to `ms` for the first connection; true when it came. */
  async firstConnection(ms: number): Promise<boolean> {
    const connected = await withTimeout(this.firstReady, ms, "Redis connect").then(
      () => true,
      () => false,
    );
    this.onFirstReady = undefined;
    return connected;
  }

  /** Starts polling: at once when connected, else after `pollMs`. */
  async start(connected: boolean): Promise<void> {
    if (connected) await this.runTick();
    else this.schedule();
  }

  /** The generation this process reads and writes. */
  get current(): number {
    return this.gen;
  }

  /** True when reads go to Redis (not dirty, not quarantined, not closed). */
  get available(): boolean {
    return !this.closed && !this.dirty && this.goodPollStart >= this.quarantineUntil;
  }

  /** A write was lost and the generation has not moved on yet: nothing written now could be trusted. */
  get isDirty(): boolean {
    return this.dirty;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Reads (`advance` false) or advances the generation in Redis; returns it. */
  async script(advance: boolean): Promise<number> {
    const floor = Math.max(Date.now(), this.gen + 1);
    const { reply } = await evalScript(this.conn, GEN_SHA, GEN_SCRIPT, this.key, [String(floor), advance ? "1" : "0"]);
    return asGeneration(reply);
  }

  /** A `clear` advanced the generation to `gen`. */
  cleared(gen: number): void {
    this.adopt(gen);
    this.metrics.bumps.inc({ reason: "clear" });
  }

  /** Stops polling; reads stop going to Redis. */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.metrics.available.set(0);
  }

  adopt(gen: number): void {
    if (gen !== this.gen) {
      this.log.debug({ from: this.gen, to: gen }, "Redis cache generation changed");
      this.gen = gen;
      this.onChange?.();
    }
    this.metrics.generation.set(gen);
  }

  private async tick(): Promise<void> {
    const start = Date.now();
    try {
      if (this.dirty) {
        const marks = this.writesLost;
        await withTimeout(this.conn.pingAll(), this.timeoutMs, "Redis PING");
        const g = await withTimeout(this.script(true), this.timeoutMs, "Redis cache generation bump");
        // A write lost while the bump was in flight may postdate it: then bump once more.
        if (this.writesLost === marks) this.dirty = false;
        this.adopt(g);
        this.metrics.bumps.inc({ reason: "write_failed" });
        this.log.info({ generation: g }, "Redis cache invalidated after a lost write (new generation)");
      } else {
        this.adopt(await withTimeout(this.script(false), this.timeoutMs, "Redis cache generation poll"));
      }
      this.goodPollStart = start;
      this.consecutiveTimeouts = 0;
      if (this.failing) {
        this.failing = false;
        this.log.info("Redis cache answers again");
      }
    } catch (err) {
      this.commandFailed(err, true);
      if (err instanceof TimeoutError && ++this.consecutiveTimeouts >= RESET_AFTER_TIMEOUTS) {
        this.consecutiveTimeouts = 0;
        this.log.warn("Redis does not answer; reconnecting");
        this.conn.reset();
      }
    } finally {
      this.metrics.available.set(this.available ? 1 : 0);
    }
  }

  async runTick(): Promise<void> {
    if (this.polling || this.closed) return;
    this.polling = true;
    clearTimeout(this.timer);
    try {
      await this.tick();
    } finally {
      this.polling = false;
      this.schedule();
    }
  }

  schedule(): void {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.runTick(), this.pollMs);
    this.timer.unref();
  }

  connectionReady(): void {
    const first = this.onFirstReady;
    this.onFirstReady = undefined;
    if (first !== undefined) first();
    // Poll at once: a dirty process advances the generation as early as possible.
    else void this.runTick();
  }

  connectionFailed(err: Error): void {
    this.commandFailed(err, true);
  }

  commandFailed(err: unknown, always = false): void {
    if (this.closed || (!always && err instanceof ErrorReply)) return;
    this.quarantineUntil = Date.now() + this.quarantineMs;
    this.metrics.available.set(0);
    if (!this.failing) {
      this.failing = true;
      this.log.warn({ err: errorMessage(err) }, "Redis cache unavailable; reading the database");
    } else {
      this.log.debug({ err: errorMessage(err) }, "Redis cache still unavailable");
    }
  }

  writeLost(err: unknown): void {
    if (!this.dirty) this.log.warn({ err: errorMessage(err) }, "a write did not reach the Redis cache; it will be invalidated when Redis answers");
    this.dirty = true;
    this.writesLost++;
    this.commandFailed(err, true);
  }
}
