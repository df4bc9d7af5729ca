/**
 * The PostgreSQL change feed: tells a process when another one changed definitions, keys or
 * values. LISTEN/NOTIFY on a dedicated connection (a registration's notification names its
 * tenant), plus a one-second poll of `change_counters` that catches missed notifications and
 * re-establishes LISTEN after an outage.
 */
import type { Logger } from "../../log.ts";
import { isStoreUnavailable } from "../errors.ts";
import type { ChangeSet } from "../types.ts";
import { createClient, timed, type Querier, type Sql } from "./client.ts";

/** The NOTIFY channel; payload `kind:instance[:counter version[:tenant]]`. */
export const CHANGES_CHANNEL = "feature_store_changes";

/** Kinds of change with a counter (values have none: their notifications carry no version). */
export type CountedKind = "definitions" | "keys";
type ChangeKind = CountedKind | "values";

const POLL_INTERVAL_MS = 1_000;

/** Options of {@link PostgresChangeFeed}. */
export interface ChangeFeedOptions {
  url: string;
  sql: Sql;
  log: Logger;
  timeoutMs: number;
  /** tells this process's own notifications apart from other processes' */
  instance: string;
}

/** The change feed of one PostgresDatabase instance. */
export class PostgresChangeFeed {
  private readonly url: string;
  private readonly sql: Sql;
  private readonly log: Logger;
  private readonly timeoutMs: number;
  readonly instance: string;
  /** last counter versions seen (undefined until first read) */
  private readonly known: Partial<Record<CountedKind, number>> = {};
  private readonly listeners: ((c: ChangeSet) => void)[] = [];
  private listenSql: Sql | undefined;
  private listening = false;
  private listenAttempt: Promise<void> | undefined;
  private listenTried = false;
  private pollTimer: ReturnType<typeof setInterval> | undefined;
  private polling = false;
  private pollFailing = false;
  private closed = false;
  private readonly timed = <T>(what: string, p: Promise<T> & { cancel?: () => unknown }, ms = this.timeoutMs): Promise<T> => timed(what, p, ms);

  constructor(opts: ChangeFeedOptions) {
    this.url = opts.url;
    this.sql = opts.sql;
    this.log = opts.log;
    this.timeoutMs = opts.timeoutMs;
    this.instance = opts.instance;
  }

  /** The NOTIFY payload of a values change by this instance. */
  get valuesPayload(): string {
    return `values:${this.instance}`;
  }

  /** Reads the counters; the kinds that changed since the last read. */
  async readCounters(): Promise<CountedKind[]> {
    const rows = await this.timed("read change counters", this.sql<{ kind: string; version: number }[]>`SELECT kind, version FROM change_counters`);
    const changed: CountedKind[] = [];
    for (const r of rows) {
      if (r.kind !== "definitions" && r.kind !== "keys") continue;
      const prev = this.known[r.kind];
      if (prev !== undefined && r.version > prev) changed.push(r.kind);
      if (prev === undefined || r.version > prev) this.known[r.kind] = r.version;
    }
    return changed;
  }

  private notify(c: ChangeSet): void {
    for (const l of this.listeners) {
      try {
        l(c);
      } catch (err) {
        this.log.error({ err }, "change listener failed");
      }
    }
  }

  private onNotification(payload: string): void {
    const [kind, instance, version, tenant] = payload.split(":");
    if (instance === this.instance) return;
    if (kind === "values") return this.notify(change("values"));
    if (kind !== "definitions" && kind !== "keys") return;
    const v = Number(version);
    const prev = this.known[kind];
    if (Number.isSafeInteger(v) && prev !== undefined && v <= prev) return;
    // the next version after the one we know: nothing was missed, so only its tenant changed
    const next = Number.isSafeInteger(v) && prev !== undefined && v === prev + 1;
    if (Number.isSafeInteger(v)) this.known[kind] = v;
    this.notify(kind === "definitions" && next && tenant ? { ...change(kind), tenants: [tenant] } : change(kind));
  }

  private listen(): Promise<void> {
    this.listenAttempt ??= (async () => {
      const first = !this.listenTried;
      this.listenTried = true;
      this.listenSql ??= createClient({
        url: this.url,
        log: this.log,
        timeoutMs: this.timeoutMs,
        max: 1,
        dedicated: true,
        onnotify: (channel, payload) => {
          if (channel === CHANGES_CHANNEL) this.onNotification(payload);
        },
        onclose: () => {
          this.listening = false;
        },
      });
      await this.timed("listen", this.listenSql.unsafe(`LISTEN ${CHANGES_CHANNEL}`));
      this.listening = true;
      // notifications sent while not listening are lost: assume values changed
      if (!first) this.notify(change("values"));
    })().finally(() => (this.listenAttempt = undefined));
    return this.listenAttempt;
  }

  async poll(): Promise<void> {
    if (this.polling || this.closed) return;
    this.polling = true;
    try {
      if (!this.listening) await this.listen();
      const changed = await this.readCounters();
      if (changed.length > 0) this.notify({ definitions: changed.includes("definitions"), keys: changed.includes("keys"), values: false });
      if (this.pollFailing) this.log.info("change feed: database reachable again");
      this.pollFailing = false;
    } catch (err) {
      // an outage is expected and logged once until it ends; anything else is a bug, logged
      // every time with its stack (it was reported as "database unreachable" too)
      if (!isStoreUnavailable(err)) {
        this.log.error({ err }, "change feed: poll failed; retrying every second");
      } else {
        if (!this.pollFailing) this.log.warn({ err }, "change feed: database unreachable; retrying every second");
        this.pollFailing = true;
      }
    } finally {
      this.polling = false;
    }
  }

  watch(listener: (changes: ChangeSet) => void): void {
    this.listeners.push(listener);
    if (this.pollTimer) return;
    this.pollTimer = setInterval(() => void this.poll(), POLL_INTERVAL_MS);
    this.pollTimer.unref?.();
    void this.poll();
  }

  /**
   * Bumps a change counter and notifies, inside the caller's transaction; the payload names the
   * tenant whose definitions changed (tenant names have no `:`).
   */
  async bump(tx: Querier, kind: CountedKind, tenant = ""): Promise<number> {
    const [r] = await tx<{ version: number }[]>`
      WITH b AS (UPDATE change_counters SET version = version + 1 WHERE kind = ${kind} RETURNING version)
      SELECT version, pg_notify(${CHANGES_CHANNEL}, ${`${kind}:${this.instance}:`} || version || ${`:${tenant}`}) FROM b`;
    if (!r) throw new Error(`change_counters has no ${kind} row`);
    return r.version;
  }

  afterBump(kind: CountedKind, version: number): void {
    const prev = this.known[kind];
    if (prev !== undefined && version <= prev) return;
    this.known[kind] = version;
    if (prev !== undefined && version !== prev + 1) queueMicrotask(() => this.notify(change(kind)));
  }

  /** Stops polling and closes the LISTEN connection. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = undefined;
    await this.listenSql?.end({ timeout: 1 });
  }
}

function change(kind: ChangeKind): ChangeSet {
  return { definitions: kind === "definitions", keys: kind === "keys", values: kind === "values" };
}
