/**
 * Partition maintenance of `feature_values`: monthly (UTC) range partitions over the event
 * time in epoch ms, created ahead of time (the current month and the next few), on demand for
 * the months a write touches, and dropped whole once entirely older than the retention.
 *
 * Values outside the on-demand window land in the DEFAULT partition; when a month's partition
 * is created later, its rows move out of DEFAULT in the same transaction. This module is the
 * only code that knows partitions exist (replace it to run on a TimescaleDB hypertable).
 */
import type { Logger } from "../../log.ts";
import type { Sql } from "./client.ts";

const PARENT = "feature_values";
const DEFAULT_PARTITION = "feature_values_default";
const DAY_MS = 86_400_000;

/** Months after the current one that always have a partition. */
export const AHEAD_MONTHS = 3;
/** A write creates partitions for months from this many months back ... */
export const ON_DEMAND_PAST_MONTHS = 120;
/** ... to this many months ahead; anything else goes to the DEFAULT partition. */
export const ON_DEMAND_FUTURE_MONTHS = 24;

/** pg_advisory_xact_lock(LOCK_NAMESPACE, LOCK_PARTITIONS) serialises partition DDL. */
const LOCK_NAMESPACE = 0x6673; // "fs"
const LOCK_PARTITIONS = 2;

/** Start (epoch ms) of the UTC month containing `t`, shifted by `add` months. */
export function monthStart(t: number, add = 0): number {
  const d = new Date(t);
  const r = new Date(0);
  // setUTCFullYear, unlike Date.UTC, does not map years 0-99 to 1900-1999
  r.setUTCFullYear(d.getUTCFullYear(), d.getUTCMonth() + add, 1);
  return r.getTime();
}

/** `feature_values_pYYYYMM` for the month starting at `from`. */
export function partitionName(from: number): string {
  const d = new Date(from);
  return `${PARENT}_p${String(d.getUTCFullYear()).padStart(4, "0")}${String(d.getUTCMonth() + 1).padStart(2, "0")}`;
}

/** A range partition: event times in [from, to). */
export interface Partition {
  name: string;
  from: number;
  to: number;
}

const BOUND = /FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)/;

/** Options of {@link PartitionManager}. */
export interface PartitionOptions {
  /** drop partitions entirely older than this many days; 0: keep forever */
  retentionDays: number;
  /** how long DDL may wait for locks, ms (it must never stall traffic for long) */
  lockTimeoutMs: number;
}

/**
 * The time range [from, to) covered without gaps by the run of `partitions` that contains the
 * month of `now`; null when no partition holds that month.
 */
export function contiguousSpan(partitions: Iterable<{ from: number; to: number }>, now: number): { from: number; to: number } | null {
  const byFrom = new Map<number, { from: number; to: number }>();
  for (const p of partitions) byFrom.set(p.from, p);
  const here = byFrom.get(monthStart(now));
  if (!here) return null;
  const byTo = new Map([...byFrom.values()].map((p) => [p.to, p]));
  let from = here.from;
  for (let p = byTo.get(from); p; p = byTo.get(from)) from = p.from;
  let to = here.to;
  for (let p = byFrom.get(to); p; p = byFrom.get(to)) to = p.to;
  return { from, to };
}

/** Creates and drops the partitions of `feature_values`. */
export class PartitionManager {
  /** partition by its lower bound, as last seen (a cache: other processes create/drop too) */
  private readonly known = new Map<number, Partition>();
  private readonly creating = new Map<number, Promise<void>>();

  constructor(
    private readonly sql: Sql,
    private readonly log: Logger,
    private readonly opts: PartitionOptions,
  ) {}

  /** The range partitions (DEFAULT excluded), in time order. */
  async list(): Promise<Partition[]> {
    const rows = await this.sql<{ name: string; bound: string }[]>`
      SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = ${PARENT}::regclass`;
    const out: Partition[] = [];
    for (const r of rows) {
      const m = BOUND.exec(r.bound);
      if (m) out.push({ name: r.name, from: Number(m[1]), to: Number(m[2]) });
    }
    out.sort((a, b) => a.from - b.from);
    this.known.clear();
    for (const p of out) this.known.set(p.from, p);
    return out;
  }

  private retentionCutoff(now: number): number | null {
    return this.opts.retentionDays > 0 ? now - this.opts.retentionDays * DAY_MS : null;
  }

  /** Creates the partitions of the current month and the next {@link AHEAD_MONTHS}. */
  async ensureAhead(now: number): Promise<string[]> {
    await this.list();
    const months: number[] = [];
    for (let i = 0; i <= AHEAD_MONTHS; i++) months.push(monthStart(now, i));
    return this.ensureMonths(months, now);
  }

  /**
   * Creates the missing partitions for the months of `eventTimes` that fall inside the
   * on-demand window (and are not already past the retention). Other times go to DEFAULT.
   */
  async ensureFor(eventTimes: Iterable<number>, now: number): Promise<string[]> {
    const lo = monthStart(now, -ON_DEMAND_PAST_MONTHS);
    const hi = monthStart(now, ON_DEMAND_FUTURE_MONTHS);
    const missing = new Set<number>();
    // batches are mostly one or two months: skip the date arithmetic for the month just seen
    let curFrom = 0;
    let curTo = 0;
    for (const t of eventTimes) {
      if (t >= curFrom && t < curTo) continue;
      curFrom = monthStart(t);
      curTo = monthStart(t, 1);
      if (curFrom >= lo && curFrom <= hi && !this.known.has(curFrom)) missing.add(curFrom);
    }
    if (missing.size === 0) return [];
    await this.list();
    return this.ensureMonths([...missing].filter((m) => !this.known.has(m)), now);
  }

  private async ensureMonths(months: number[], now: number): Promise<string[]> {
    const cutoff = this.retentionCutoff(now);
    const created: string[] = [];
    for (const from of months) {
      if (this.known.has(from)) continue;
      if (cutoff !== null && monthStart(from, 1) <= cutoff) continue;
      let p = this.creating.get(from);
      if (!p) {
        p = this.create(from)
          .then((made) => {
            if (made) created.push(partitionName(from));
          })
          .finally(() => this.creating.delete(from));
        this.creating.set(from, p);
      }
      await p;
    }
    return created;
  }

  /**
   * Creates one month's partition as a plain table, moves that month's rows out of DEFAULT
   * into it, and attaches it: ATTACH needs a weaker lock on the parent than CREATE ... PARTITION
   * OF, so reads and writes of other months go on meanwhile.
   */
  private async create(from: number): Promise<boolean> {
    const to = monthStart(from, 1);
    const name = partitionName(from);
    if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to)) throw new Error(`bad partition bounds ${from}..${to}`);
    return this.sql.begin(async (tx) => {
      await tx`SELECT set_config('lock_timeout', ${String(this.opts.lockTimeoutMs)}, true)`;
      await tx`SELECT pg_advisory_xact_lock(${LOCK_NAMESPACE}, ${LOCK_PARTITIONS})`;
      const existing = await tx<{ bound: string }[]>`
        SELECT pg_get_expr(c.relpartbound, c.oid) AS bound
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = ${PARENT}::regclass`;
      for (const e of existing) {
        const m = BOUND.exec(e.bound);
        if (m && Number(m[1]) < to && Number(m[2]) > from) return false;
      }
      await tx.unsafe(`CREATE TABLE ${name} (LIKE ${PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)`);
      // a CHECK matching the bounds lets ATTACH skip scanning the new table
      await tx.unsafe(`ALTER TABLE ${name} ADD CONSTRAINT ${name}_bounds CHECK (event_time >= ${from} AND event_time < ${to})`);
      const moved = await tx.unsafe(
        `WITH moved AS (DELETE FROM ${DEFAULT_PARTITION} WHERE event_time >= ${from} AND event_time < ${to}
                        RETURNING feature_id, entity_id, event_time, seq, value_hash, value)
         INSERT INTO ${name} (feature_id, entity_id, event_time, seq, value_hash, value) SELECT * FROM moved`,
      );
      await tx.unsafe(`ALTER TABLE ${PARENT} ATTACH PARTITION ${name} FOR VALUES FROM (${from}) TO (${to})`);
      this.log.info({ partition: name, moved_from_default: moved.count }, "created partition");
      return true;
    }).then((made) => {
      if (made) this.known.set(from, { name, from, to });
      return made;
    });
  }

  /**
   * Retention: drops every partition whose range ends at or before `now - retentionDays`, and
   * deletes rows that old from DEFAULT. Returns the names of the partitions dropped.
   */
  async dropExpired(now: number): Promise<string[]> {
    const cutoff = this.retentionCutoff(now);
    if (cutoff === null) return [];
    const expired = (await this.list()).filter((p) => p.to <= cutoff);
    const dropped: string[] = [];
    for (const p of expired) {
      await this.sql.begin(async (tx) => {
        await tx`SELECT set_config('lock_timeout', ${String(this.opts.lockTimeoutMs)}, true)`;
        await tx`SELECT pg_advisory_xact_lock(${LOCK_NAMESPACE}, ${LOCK_PARTITIONS})`;
        await tx.unsafe(`DROP TABLE IF EXISTS ${p.name}`);
      });
      this.known.delete(p.from);
      dropped.push(p.name);
      this.log.info({ partition: p.name }, "dropped expired partition");
    }
    await this.sql.begin(async (tx) => {
      await tx`SELECT set_config('statement_timeout', '60000', true)`;
      await tx`DELETE FROM ${tx(DEFAULT_PARTITION)} WHERE event_time < ${cutoff}`;
    });
    return dropped;
  }

  /**
   * The time range [from, to) covered without gaps by the run of range partitions around
   * `now`, as last seen; null when there is none. Queries restricted to it cannot touch the
   * DEFAULT partition, so the planner scans its partitions newest first and stops at the first
   * hit (an ordered Append) instead of probing every partition (a Merge Append). A stale answer
   * only costs speed: rows outside it are still found by a query over the rest.
   */
  span(now: number): { from: number; to: number } | null {
    return contiguousSpan(this.known.values(), now);
  }

  /** Ahead-of-time creation plus retention; failures are logged, never thrown. */
  async maintain(now: number): Promise<void> {
    try {
      await this.ensureAhead(now);
      await this.dropExpired(now);
    } catch (err) {
      this.log.warn({ err }, "partition maintenance failed; will retry");
    }
  }
}
