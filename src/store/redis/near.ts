/**
 * The near cache of the Redis online store: the entries this process read from Redis, kept in
 * process and exact through Redis's server-assisted client-side caching.
 *
 * - One connection of its own (not node-redis: a raw RESP3 socket, a few microseconds per
 *   round trip) subscribes with `CLIENT TRACKING ON BCAST PREFIX <ns>:{`: Redis then pushes the
 *   name of every entity key that changes (a write by any process, an expiry, an eviction, a
 *   FLUSHALL as "everything") on it, and the entry is dropped.
 * - Exact, not eventually consistent: a lookup waits for one reply on that connection to a
 *   command sent after the lookup started. Redis queues a key's invalidation to this connection
 *   before it answers the write that caused it, so a reply to a command sent after a write
 *   completed (anywhere) comes after that write's invalidation: a value written through any
 *   server is served by all at once. A lookup that misses sends its `HMGET`s on this connection
 *   (their replies are its one wait); a lookup that holds everything sends a `PING` (shared by
 *   the lookups that arrive meanwhile).
 * - An entry is filled from such an `HMGET` reply, when it is read: an invalidation of the key
 *   written after it comes after it on the same connection, so no fill can outlive a change
 *   (a flush, a new generation, since the read was sent refuses it).
 * - When the tracking connection drops, stops answering (a `PING` unanswered for the store's
 *   timeout) or has to reconnect, the whole near cache is forgotten, and lookups read Redis
 *   directly until it is subscribed again.
 * - Bounded: at most `maxValues` values (the oldest entries go first).
 *
 * Only for a single Redis server; a cluster reads Redis directly (see README, "Redis client").
 */
import type { Socket } from "bun";
import type { Logger } from "../../log.ts";
import { TimeoutError } from "../../lib/timeout.ts";
import type { CachedValue, ValueKey } from "../types.ts";
import { heldRow, HeldRow } from "../held-row.ts";
import { decodeCached, escapePart } from "./format.ts";

/** A negative entry ("never written") in the near cache. */
export const ABSENT = 0;
/** A held value is a {@link HeldRow} (the online path memoises its JSON in it). */
export type NearEntry = HeldRow | typeof ABSENT;
export type NearFields = Map<number, NearEntry>;

/**
 * Entries per key, bounded by the number of values; see the module comment. Held per key
 * prefix (generation, tenant, entity type), then per escaped entity id: a lookup hashes the
 * entity id it was given instead of a key built for it.
 */
export class NearCache {
  private readonly spaces = new Map<string, Map<string, NearFields>>();
  private values = 0;
  /** Moves on every flush: fills sent before it are not kept. */
  private epoch_ = 0;
  /** Moves on every invalidation and flush. */
  private changes_ = 0;

  constructor(private readonly maxValues: number) {}

  get size(): number {
    return this.values;
  }

  get epoch(): number {
    return this.epoch_;
  }

  /**
   * Invalidations and flushes so far: values a lookup took while it was `n` are still current
   * as long as it is `n` (for one taken before a wait: once the wait is over, see {@link Tracker}).
   */
  get changes(): number {
    return this.changes_;
  }

  /** The entries under one key prefix (`entityKeyPrefix`), by escaped entity id. */
  space(prefix: string): ReadonlyMap<string, NearFields> | undefined {
    return this.spaces.get(prefix);
  }

  /**
   * The values held for `keys` under `prefix` are put into `out` (except at the indexes `skip`
   * marks); returns the indexes of the others, or `undefined` when every one is held. Current
   * only once a reply of the tracking connection sent after the lookup started came (see
   * {@link Tracker}).
   */
  hits(prefix: string, keys: readonly ValueKey[], out: (CachedValue | undefined)[], skip?: Uint8Array): number[] | undefined {
    let missing: number[] | undefined;
    const space = this.spaces.get(prefix);
    let lastId: string | undefined;
    let fields: NearFields | undefined;
    for (let i = 0; i < keys.length; i++) {
      if (skip !== undefined && skip[i] === 1) continue;
      const k = keys[i] as ValueKey;
      if (k.entity_id !== lastId) {
        lastId = k.entity_id;
        fields = space?.get(escapePart(lastId));
      }
      const e = fields?.get(k.feature_id);
      if (e === undefined) (missing ??= []).push(i);
      else out[i] = e === ABSENT ? null : e;
    }
    return missing;
  }

  /** Drops the entry of `key` (a whole entity key, as Redis names it). */
  invalidate(key: string): void {
    this.changes_++;
    const c = key.lastIndexOf(":");
    if (c >= 0 && key.endsWith("}")) {
      const space = this.spaces.get(key.slice(0, c + 1));
      if (space === undefined) return;
      const id = key.slice(c + 1, -1);
      const f = space.get(id);
      if (f !== undefined) {
        this.values -= f.size;
        space.delete(id);
      }
    }
  }

  flush(): void {
    this.spaces.clear();
    this.values = 0;
    this.epoch_++;
    this.changes_++;
  }

  /** Keeps `value` for field `field` of the key `prefix + id + "}"` (read on the tracking connection, see the module comment). */
  put(prefix: string, id: string, field: number, value: CachedValue): void {
    let space = this.spaces.get(prefix);
    if (space === undefined) {
      space = new Map();
      this.spaces.set(prefix, space);
    }
    let f = space.get(id);
    if (f === undefined) {
      f = new Map();
      space.set(id, f);
    }
    const had = f.size;
    f.set(field, value === null ? ABSENT : heldRow(value));
    this.values += f.size - had;
    if (this.values > this.maxValues) this.evict();
  }

  private evict(): void {
    // Maps iterate in insertion order: the oldest entries go first
    for (const [prefix, space] of this.spaces) {
      for (const [id, f] of space) {
        if (this.values <= this.maxValues * 0.9) return;
        this.values -= f.size;
        space.delete(id);
      }
      this.spaces.delete(prefix);
    }
  }
}

/** An error reply of Redis on the tracking connection. */
class ReplyError extends Error {}

const INCOMPLETE = Symbol("incomplete");
type Resp = string | number | boolean | null | Error | Push | Resp[];

/**
 * One RESP3 value of `buf` at `pos`: the value and the position after it, or INCOMPLETE when
 * the buffer ends first. Bulk strings come back as UTF-8 strings (keys, names, `PONG`).
 */
function parse(buf: Buffer, pos: number): [Resp, number] | typeof INCOMPLETE {
  const eol = buf.indexOf(13, pos);
  if (eol < 0 || eol + 1 >= buf.length) return INCOMPLETE;
  const type = buf[pos] as number;
  const line = (): string => buf.toString("latin1", pos + 1, eol);
  const next = eol + 2;
  switch (type) {
    case 43: // + simple string
      return [buf.toString("utf8", pos + 1, eol), next];
    case 45: // - error
      return [new ReplyError(buf.toString("utf8", pos + 1, eol)), next];
    case 58: // : integer
    case 44: // , double
      return [Number(line()), next];
    case 40: // ( big number
      return [line(), next];
    case 35: // # boolean
      return [line() === "t", next];
    case 95: // _ null
      return [null, next];
    case 36: // $ bulk string
    case 33: // ! bulk error
    case 61: {
      // = verbatim string
      const n = Number(line());
      if (n < 0) return [null, next];
      if (next + n + 2 > buf.length) return INCOMPLETE;
      const s = buf.toString("utf8", type === 61 ? next + 4 : next, next + n);
      return [type === 33 ? new ReplyError(s) : s, next + n + 2];
    }
    case 42: // * array
    case 126: // ~ set
    case 62: // > push
    case 37: // % map (as a flat list)
    case 124: {
      // | attribute (read and dropped, then the value it annotates)
      let n = Number(line());
      if (n < 0) return [null, next];
      if (type === 37 || type === 124) n *= 2;
      const items: Resp[] = [];
      let p = next;
      for (let i = 0; i < n; i++) {
        const r = parse(buf, p);
        if (r === INCOMPLETE) return INCOMPLETE;
        items.push(r[0]);
        p = r[1];
      }
      if (type === 124) return parse(buf, p);
      return [type === 62 ? new Push(items) : items, p];
    }
    default:
      throw new Error(`unexpected RESP type byte ${type} from Redis`);
  }
}

/** A RESP3 push (out-of-band message), told apart from a reply. */
class Push {
  constructor(readonly items: Resp[]) {}
}

function encode(args: string[]): string {
  let s = `*${args.length}\r\n`;
  for (const a of args) s += `$${Buffer.byteLength(a)}\r\n${a}\r\n`;
  return s;
}
const PING = encode(["PING"]);
const noop = (): void => undefined;

interface Waiter {
  resolve(): void;
  reject(err: Error): void;
  promise: Promise<void>;
}
function waiter(): Waiter {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined); // a barrier nobody awaits any more must not be "unhandled"
  return { resolve, reject, promise };
}

/** Options of {@link Tracker}. */
export interface TrackerOptions {
  /** `redis://` or `rediss://` URL of the server. */
  url: string;
  /** Key prefix to track (`<ns>:{`). */
  prefix: string;
  /** Longest wait for a `PING`, ms; also the connect timeout. */
  timeoutMs: number;
  /** Longest pause between reconnect attempts, ms. */
  reconnectMaxMs: number;
  log: Logger;
  near: NearCache;
}

/** One lookup's `HMGET`s on the tracking connection (one per entity), answered together. */
interface ReadJob {
  prefix: string;
  /** Per entity: its escaped id, and whether its key may be kept (see {@link Tracker.read}). */
  ids: string[];
  keepable: boolean[];
  /** Per entity, its feature ids (the fields asked), and where each answer goes in `values`. */
  fields: number[][];
  slots: number[][];
  values: (CachedValue | undefined)[];
  /** The near cache's epoch when sent: a flush since refuses the fills. */
  epoch: number;
  left: number;
  resolve(values: (CachedValue | undefined)[]): void;
  reject(err: Error): void;
}

type Pending =
  | { kind: "ping"; w: Waiter; sentAt: number }
  | { kind: "read"; job: ReadJob; entity: number; sentAt: number }
  | { kind: "setup"; done: (reply: Resp) => void };

/** The tracking connection (see the module comment). */
export class Tracker {
  private socket: Socket<undefined> | undefined;
  private readonly pending: Pending[] = [];
  private inbuf: Buffer = Buffer.alloc(0);
  /** Bytes the socket did not take yet. */
  private out: Buffer | undefined;
  /** Connection attempts so far (a late answer of an abandoned one is ignored). */
  private attempts = 0;
  /** Subscribed: lookups may use the near cache. */
  private subscribed = false;
  /** The lookups waiting for the next `PING` (sent once the one in flight is answered). */
  private next: Waiter | undefined;
  private pingsInFlight = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;
  private attempt = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  /** A server without RESP3 or client tracking: never tried again. */
  private unsupported = false;
  private failing = false;
  private readonly o: TrackerOptions;

  constructor(o: TrackerOptions) {
    this.o = o;
    this.connect();
  }

  /** True while the near cache may be used. */
  get ready(): boolean {
    return this.subscribed;
  }

  /**
   * Resolves once every invalidation Redis queued before now has been applied (one round trip,
   * shared with the lookups that arrive meanwhile). Rejects when the connection fails, or with a
   * TimeoutError when Redis does not answer within the timeout (the near cache is then
   * forgotten either way). Only while {@link ready}.
   */
  barrier(): Promise<void> {
    if (!this.subscribed) return Promise.reject(new Error("Redis near cache is not tracking"));
    let w = this.next;
    if (w === undefined) {
      w = waiter();
      this.next = w;
      if (this.pingsInFlight === 0) this.sendPing();
    }
    return w.promise;
  }

  /**
   * Reads `keys[idx[j]]` for every j from Redis on the tracking connection (one `HMGET` per
   * entity, one write for all); resolves with the values in the order of `idx` once the last
   * reply came: by then every invalidation queued before the lookup started has been applied
   * too (the reply is a barrier, as a `PING`'s). Every value read is kept in the near cache as
   * its reply is parsed (a field Redis does not hold is not). Rejects as {@link barrier}.
   */
  read(prefix: string, keys: readonly ValueKey[], idx: readonly number[]): Promise<(CachedValue | undefined)[]> {
    if (!this.subscribed) return Promise.reject(new Error("Redis near cache is not tracking"));
    const byEntity = new Map<string, number>();
    const job: ReadJob = { prefix, ids: [], keepable: [], fields: [], slots: [], values: new Array<CachedValue | undefined>(idx.length), epoch: this.o.near.epoch, left: 0, resolve: noop, reject: noop };
    for (let j = 0; j < idx.length; j++) {
      const k = keys[idx[j] as number] as ValueKey;
      let e = byEntity.get(k.entity_id);
      if (e === undefined) {
        e = job.ids.length;
        byEntity.set(k.entity_id, e);
        job.ids.push(escapePart(k.entity_id));
        job.fields.push([]);
        job.slots.push([]);
      }
      (job.fields[e] as number[]).push(k.feature_id);
      (job.slots[e] as number[]).push(j);
    }
    const promise = new Promise<(CachedValue | undefined)[]>((resolve, reject) => {
      job.resolve = resolve;
      job.reject = reject;
    });
    const sentAt = performance.now();
    let cmd = "";
    for (let e = 0; e < job.ids.length; e++) {
      const key = `${prefix}${job.ids[e] as string}}`;
      // (a key with a lone surrogate goes to Redis as U+FFFD: its invalidations would name another key)
      job.keepable.push(key.isWellFormed());
      const fields = job.fields[e] as number[];
      cmd += `*${fields.length + 2}\r\n$5\r\nHMGET\r\n$${Buffer.byteLength(key)}\r\n${key}\r\n`;
      for (const f of fields) {
        const name = String(f);
        cmd += `$${name.length}\r\n${name}\r\n`;
      }
      this.pending.push({ kind: "read", job, entity: e, sentAt });
    }
    job.left = job.ids.length;
    this.write(cmd);
    if (this.timer === undefined) this.armTimer(this.o.timeoutMs);
    return promise;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    this.fail(new Error("Redis near cache closed"));
  }

  private sendPing(): void {
    const w = this.next as Waiter;
    this.next = undefined;
    const now = performance.now();
    this.pending.push({ kind: "ping", w, sentAt: now });
    this.pingsInFlight++;
    this.write(PING);
    if (this.timer === undefined) this.armTimer(this.o.timeoutMs);
  }

  private armTimer(ms: number): void {
    this.timer = setTimeout(() => this.checkTimeout(), Math.max(1, ms));
    this.timer.unref();
  }

  /** One timer for every `PING` and read: the oldest one unanswered decides. */
  private checkTimeout(): void {
    this.timer = undefined;
    let oldest: { sentAt: number } | undefined;
    for (const p of this.pending) {
      if (p.kind !== "setup") {
        oldest = p;
        break;
      }
    }
    if (oldest === undefined) return;
    const left = oldest.sentAt + this.o.timeoutMs - performance.now();
    if (left > 0) this.armTimer(left);
    else this.fail(new TimeoutError(`Redis did not answer within ${this.o.timeoutMs} ms (near cache)`), true);
  }

  private write(data: string): void {
    const s = this.socket;
    if (s === undefined) return;
    if (this.out !== undefined) {
      this.out = Buffer.concat([this.out, Buffer.from(data)]);
      return;
    }
    const len = data === PING ? PING.length : Buffer.byteLength(data);
    const n = s.write(data);
    if (n < len) this.out = Buffer.from(data).subarray(Math.max(0, n));
  }

  private drain(): void {
    const s = this.socket;
    const out = this.out;
    if (s === undefined || out === undefined) return;
    const n = s.write(out);
    this.out = n < out.length ? out.subarray(Math.max(0, n)) : undefined;
  }

  private connect(): void {
    if (this.closed || this.unsupported) return;
    const u = new URL(this.o.url);
    const tls = u.protocol === "rediss:";
    const hostname = u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname;
    const port = u.port === "" ? 6379 : Number(u.port);
    const user = u.username !== "" ? decodeURIComponent(u.username) : "default";
    const password = u.password !== "" ? decodeURIComponent(u.password) : undefined;
    const id = ++this.attempts;
    const current = (): boolean => id === this.attempts && !this.closed;
    // connected and subscribed within this, or the attempt is abandoned (and retried)
    const connectTimer = setTimeout(() => {
      if (current() && !this.subscribed) {
        this.attempts++;
        this.fail(new Error("Redis near cache: connect and subscribe timed out"), true);
      }
    }, Math.max(this.o.timeoutMs, 500));
    connectTimer.unref();
    const onOpen = (socket: Socket<undefined>): void => {
      if (!current()) {
        socket.terminate();
        return;
      }
      this.socket = socket;
      socket.unref(); // never what keeps a process alive
      socket.setNoDelay(true);
      const hello = ["HELLO", "3", ...(password !== undefined ? ["AUTH", user, password] : []), "SETNAME", "feature-store-near"];
      this.pending.push({
        kind: "setup",
        done: (r) => {
          if (r instanceof Error) return this.setupFailed(r);
          this.pending.push({
            kind: "setup",
            done: (t) => {
              if (t instanceof Error) return this.setupFailed(t);
              clearTimeout(connectTimer);
              this.o.near.flush();
              this.subscribed = true;
              this.attempt = 0;
              if (this.failing) this.o.log.info("Redis near cache tracking again");
              this.failing = false;
            },
          });
          this.write(encode(["CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", this.o.prefix]));
        },
      });
      this.write(encode(hello));
    };
    Bun.connect<undefined>({
      hostname,
      port,
      ...(tls ? { tls: { serverName: hostname } } : {}),
      socket: {
        open: (s) => onOpen(s),
        data: (s, chunk) => {
          if (s === this.socket) this.onData(chunk);
        },
        drain: (s) => {
          if (s === this.socket) this.drain();
        },
        close: (s) => {
          if (s === this.socket) this.fail(new Error("Redis near cache connection closed"), true);
        },
        error: (s, err) => {
          if (s === this.socket) this.fail(err, true);
        },
        connectError: (_s, err) => {
          clearTimeout(connectTimer);
          if (current()) this.fail(err, true);
        },
      },
    }).catch((err: unknown) => {
      clearTimeout(connectTimer);
      if (current()) this.fail(err instanceof Error ? err : new Error(String(err)), true);
    });
  }

  private setupFailed(err: Error): void {
    // Redis before 6 (no HELLO / RESP3 / CLIENT TRACKING), or an ACL user not allowed them: read Redis directly, for good
    if (/unknown (command|subcommand)|syntax error|wrong number of arguments|NOPROTO|NOPERM/i.test(err.message)) {
      this.unsupported = true;
      this.o.log.warn({ err: err.message }, "Redis refused client tracking over RESP3; the near cache is off (lookups read Redis)");
    }
    this.fail(err, true);
  }

  private onData(chunk: Buffer): void {
    let buf = this.inbuf.length === 0 ? chunk : Buffer.concat([this.inbuf, chunk]);
    let pos = 0;
    try {
      while (pos < buf.length) {
        // fast path: the PONG of a barrier
        if (buf.length >= pos + 7 && buf[pos] === 43 && buf[pos + 1] === 80 && buf[pos + 2] === 79 && buf[pos + 3] === 78 && buf[pos + 4] === 71 && buf[pos + 5] === 13) {
          pos += 7;
          this.reply("PONG");
          continue;
        }
        // the reply of a read: its values decoded (and copied) as they are parsed
        if (buf[pos] === 42 && this.pending[0]?.kind === "read") {
          const next = this.readReply(buf, pos);
          if (next < 0) break;
          pos = next;
          continue;
        }
        const r = parse(buf, pos);
        if (r === INCOMPLETE) break;
        pos = r[1];
        const v = r[0];
        if (v instanceof Push) this.push(v.items);
        else this.reply(v);
      }
    } catch (err) {
      this.fail(err instanceof Error ? err : new Error(String(err)), true);
      return;
    }
    if (pos >= buf.length) buf = Buffer.alloc(0);
    else buf = Buffer.from(buf.subarray(pos)); // a copy: the chunk may be reused
    this.inbuf = buf;
  }

  /**
   * The `HMGET` reply at `pos` (an array of bulk strings or nulls) for the read at the head of
   * `pending`: its values into the read's job and the near cache; the position after it, or -1
   * when the buffer ends first (nothing taken then).
   */
  private readReply(buf: Buffer, pos: number): number {
    let eol = buf.indexOf(13, pos);
    if (eol < 0 || eol + 1 >= buf.length) return -1;
    const n = Number(buf.toString("latin1", pos + 1, eol));
    const p = this.pending[0] as Extract<Pending, { kind: "read" }>;
    const job = p.job;
    const fields = job.fields[p.entity] as number[];
    if (n !== fields.length) throw new Error("unexpected HMGET reply from Redis (near cache)");
    // first find the end (a reply split over chunks is parsed again whole)
    const starts: number[] = [];
    const ends: number[] = [];
    let at = eol + 2;
    for (let i = 0; i < n; i++) {
      eol = buf.indexOf(13, at);
      if (eol < 0 || eol + 1 >= buf.length) return -1;
      const t = buf[at] as number;
      if (t === 95) {
        // _ null
        starts.push(-1);
        ends.push(-1);
        at = eol + 2;
      } else if (t === 36) {
        const len = Number(buf.toString("latin1", at + 1, eol));
        if (len < 0) {
          starts.push(-1);
          ends.push(-1);
          at = eol + 2;
          continue;
        }
        if (eol + 2 + len + 2 > buf.length) return -1;
        starts.push(eol + 2);
        ends.push(eol + 2 + len);
        at = eol + 2 + len + 2;
      } else throw new Error(`unexpected RESP type byte ${t} in an HMGET reply (near cache)`);
    }
    this.pending.shift();
    const near = this.o.near;
    const keep = job.keepable[p.entity] === true && job.epoch === near.epoch;
    const id = job.ids[p.entity] as string;
    const slots = job.slots[p.entity] as number[];
    for (let i = 0; i < n; i++) {
      const s = starts[i] as number;
      let value: CachedValue | undefined;
      if (s >= 0) {
        value = decodeCached(buf.subarray(s, ends[i] as number));
        // its own bytes: the chunk is reused
        if (value) value = new HeldRow(value.event_time, value.seq, value.value.slice());
        if (value !== undefined && keep) near.put(job.prefix, id, fields[i] as number, value);
      }
      job.values[slots[i] as number] = value;
    }
    if (--job.left === 0) job.resolve(job.values);
    return at;
  }

  private reply(v: Resp): void {
    const p = this.pending.shift();
    if (p === undefined) throw new Error("unexpected reply on the Redis near cache connection");
    if (p.kind === "setup") {
      p.done(v);
      return;
    }
    if (p.kind === "read") {
      // an error reply (WRONGTYPE...): the whole read fails, the lookup reads Redis directly
      if (p.job.left > 0) {
        p.job.left = 0;
        p.job.reject(v instanceof Error ? v : new Error("unexpected HMGET reply from Redis (near cache)"));
      }
      return;
    }
    this.pingsInFlight--;
    if (v instanceof Error) p.w.reject(v);
    else p.w.resolve();
    if (this.next !== undefined && this.pingsInFlight === 0) this.sendPing();
  }

  private push(items: Resp[]): void {
    if (items[0] !== "invalidate") return;
    const keys = items[1];
    if (Array.isArray(keys)) {
      for (const k of keys) if (typeof k === "string") this.o.near.invalidate(k);
    } else this.o.near.flush();
  }

  /** The connection is unusable: forget the near cache, fail the waiting lookups, reconnect. */
  private fail(err: Error, reconnect = false): void {
    const wasUp = this.subscribed;
    this.subscribed = false;
    this.o.near.flush();
    const s = this.socket;
    this.socket = undefined;
    this.inbuf = Buffer.alloc(0);
    this.out = undefined;
    clearTimeout(this.timer);
    this.timer = undefined;
    const pending = this.pending.splice(0);
    this.pingsInFlight = 0;
    const next = this.next;
    this.next = undefined;
    for (const p of pending) {
      if (p.kind === "ping") p.w.reject(err);
      else if (p.kind === "read" && p.job.left > 0) {
        p.job.left = 0;
        p.job.reject(err);
      }
    }
    next?.reject(err);
    if (s !== undefined) {
      try {
        s.terminate();
      } catch {
        // already closed
      }
    }
    if (this.closed) return;
    if (wasUp || !this.failing) {
      if (!this.unsupported) this.o.log.warn({ err: err.message }, "Redis near cache tracking lost; reading Redis directly until it is back");
      this.failing = true;
    }
    if (reconnect && this.reconnectTimer === undefined && !this.unsupported) {
      const delay = Math.min(50 * 2 ** Math.min(this.attempt++, 10), this.o.reconnectMaxMs) + Math.floor(Math.random() * 50);
      this.reconnectTimer = setTimeout(() => {
        this.reconnectTimer = undefined;
        this.connect();
      }, delay);
      this.reconnectTimer.unref();
    }
  }
}
