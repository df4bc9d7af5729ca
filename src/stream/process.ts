/**
 * One batch of records -> stored values and dead letters. Every record is validated on its
 * own (one bad record never fails the others); the values of all valid records are stored in
 * ONE database transaction (one `writeValues` call), then offered to the online cache. No
 * Kafka here and no retries: a store failure throws, and the caller retries the whole batch,
 * which is safe because storing is idempotent (identical re-sends are not stored again).
 */
import type { Definition } from "../registry/snapshot.ts";
import { dbCall, type Deps } from "../serving/deps.ts";
import { offerToCache } from "../serving/write.ts";
import type { ValueWrite, WrittenRow } from "../store/types.ts";
import { decodeEvent, prepareEvent, type EventMessage, type Rejection } from "./message.ts";
import type { DeadLetter, SourceRecord } from "./source.ts";

/** A record the registry may simply not know yet (definitions registered moments ago). */
const RETRY_AFTER_RELOAD = /unknown feature|belongs to entity type/;

/** Clock skew tolerated between the producers' clocks (record timestamps) and ours, ms. */
const SKEW_MS = 5_000;

/** Outcome of one batch. */
export interface BatchOutcome {
  letters: DeadLetter[];
  /** valid messages with at least one newly stored value (or no values at all) */
  stored: number;
  /** valid messages every value of which was an identical re-send */
  duplicates: number;
  /** event times (ms) of the stored messages, for the freshness metric */
  storedEventTimes: number[];
}

interface Valid {
  record: SourceRecord;
  event: EventMessage;
  rows: ValueWrite[];
  defs: Definition[];
}

/** What the batch processor needs besides the records. */
export interface ProcessContext {
  deps: Deps;
  tenants: ReadonlySet<string>;
  /**
   * Reloads the registry when it may be older than `since` (epoch ms); true when it did.
   * Used before dead-lettering an event for a feature the snapshot does not know.
   */
  refreshRegistry(since: number): Promise<boolean>;
}

const rowKey = (r: { feature_id: number; entity_id: string; event_time: number }) => `${r.feature_id}\u0000${r.event_time}\u0000${r.entity_id}`;

/**
 * Validates and stores a batch. Throws (an `unavailable` AppError) when the database write
 * fails; nothing is then reported as stored, and the batch may be retried as a whole.
 */
export async function processBatch(ctx: ProcessContext, records: readonly SourceRecord[]): Promise<BatchOutcome> {
  const { deps } = ctx;
  const letters: DeadLetter[] = [];
  const valid: Valid[] = [];
  let retry: { record: SourceRecord; event: EventMessage; rejection: Rejection }[] = [];
  for (const record of records) {
    const decoded = decodeEvent(record, ctx.tenants);
    if (!decoded.ok) {
      letters.push({ record, ...decoded.rejection });
      continue;
    }
    const prepared = prepareEvent(deps, decoded.event, record.timestamp);
    if (prepared.ok) valid.push({ record, event: decoded.event, rows: prepared.rows, defs: prepared.defs });
    else if (RETRY_AFTER_RELOAD.test(prepared.rejection.detail)) retry.push({ record, event: decoded.event, rejection: prepared.rejection });
    else letters.push({ record, ...prepared.rejection });
  }
  if (retry.length > 0) {
    const newest = Math.max(...retry.map((r) => r.record.timestamp));
    if (await ctx.refreshRegistry(newest + SKEW_MS)) {
      const again = retry;
      retry = [];
      for (const r of again) {
        const prepared = prepareEvent(deps, r.event, r.record.timestamp);
        if (prepared.ok) valid.push({ record: r.record, event: r.event, rows: prepared.rows, defs: prepared.defs });
        else retry.push({ ...r, rejection: prepared.rejection });
      }
    }
    for (const r of retry) letters.push({ record: r.record, ...r.rejection });
    // keep the stored order equal to the offset order, so "the value written last" is the later record
    valid.sort((a, b) => (a.record.partition - b.record.partition) || (a.record.offset < b.record.offset ? -1 : a.record.offset > b.record.offset ? 1 : 0));
  }

  const rows = valid.flatMap((v) => v.rows);
  const written = rows.length === 0 ? [] : await dbCall(deps, "write", () => deps.stores.offline.writeValues(rows));
  deps.metrics.valuesWritten.inc(rows.length);
  await offerBatchToCache(deps, valid, written);

  // Which messages had a value newly stored: match written rows back by identity, in order.
  const fresh = new Map<string, number>();
  for (const w of written) fresh.set(rowKey(w), (fresh.get(rowKey(w)) ?? 0) + 1);
  let stored = 0;
  let duplicates = 0;
  const storedEventTimes: number[] = [];
  for (const v of valid) {
    let any = v.rows.length === 0;
    for (const r of v.rows) {
      const n = fresh.get(rowKey(r)) ?? 0;
      if (n > 0) {
        any = true;
        fresh.set(rowKey(r), n - 1);
      }
    }
    if (any) {
      stored++;
      const first = v.rows[0];
      if (first) storedEventTimes.push(first.event_time);
    } else duplicates++;
  }
  return { letters, stored, duplicates, storedEventTimes };
}

/**
 * Offers newly stored rows to the online store, grouped by tenant and entity type. A private
 * (in-process) one is skipped: in a worker process nobody reads it, and servers drop their own
 * when they see the database change.
 */
async function offerBatchToCache(deps: Deps, valid: readonly Valid[], written: readonly WrittenRow[]): Promise<void> {
  if (written.length === 0 || !deps.stores.online.capabilities.sharedAcrossProcesses) return;
  const owner = new Map<number, { group: string; def: Definition }>();
  const groups = new Map<string, { tenant: string; entityType: string; defs: Definition[]; rows: WrittenRow[] }>();
  for (const v of valid) {
    const gk = `${v.event.tenant}\u0000${v.event.entity_type}`;
    let g = groups.get(gk);
    if (!g) groups.set(gk, (g = { tenant: v.event.tenant, entityType: v.event.entity_type, defs: [], rows: [] }));
    for (const d of v.defs) {
      if (!owner.has(d.id)) g.defs.push(d);
      owner.set(d.id, { group: gk, def: d });
    }
  }
  for (const w of written) {
    const o = owner.get(w.feature_id);
    if (o) groups.get(o.group)?.rows.push(w);
  }
  for (const g of groups.values()) await offerToCache(deps, g.tenant, g.entityType, g.rows, g.defs);
}
