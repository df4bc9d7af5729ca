/**
 * One batch of records -> stored values and dead letters. Every record is validated on its
 * own (one bad record never fails the others); the values of all valid records are stored in
 * ONE database transaction through `storeValues`, the write path HTTP writes take too. No
 * Kafka here and no retries: a store failure throws, and the caller retries the whole batch,
 * which is safe because storing is idempotent (identical re-sends are not stored again).
 */
import type { Definition } from "../registry/snapshot.ts";
import type { Deps } from "../serving/deps.ts";
import { storeValues, type WriteGroup } from "../serving/write.ts";
import type { RowOutcome, ValueWrite } from "../store/types.ts";
import { decodeEvent, prepareEvent, type EventMessage, type Rejection } from "./message.ts";
import type { DeadLetter, SourceRecord } from "./source.ts";

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
    else if (prepared.staleRegistry) retry.push({ record, event: decoded.event, rejection: prepared.rejection });
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

  // One group per tenant and entity type; each message's rows are a contiguous slice of its
  // group's, in offset order (so "the value written last" is the later record).
  const groups = new Map<string, { group: WriteGroup; members: { valid: Valid; start: number }[] }>();
  for (const v of valid) {
    const gk = `${v.event.tenant}\u0000${v.event.entity_type}`;
    let g = groups.get(gk);
    if (!g) groups.set(gk, (g = { group: { tenant: v.event.tenant, entityType: v.event.entity_type, rows: [], defs: [] }, members: [] }));
    g.members.push({ valid: v, start: g.group.rows.length });
    g.group.rows.push(...v.rows);
    g.group.defs.push(...v.defs);
  }
  const all = [...groups.values()];
  const outcomes = await storeValues(deps, all.map((g) => g.group), { servesReads: false });

  let stored = 0;
  let duplicates = 0;
  const storedEventTimes: number[] = [];
  all.forEach((g, gi) => {
    const out = outcomes[gi] as RowOutcome[];
    for (const { valid: v, start } of g.members) {
      let fresh = v.rows.length === 0;
      for (let i = start; i < start + v.rows.length && !fresh; i++) fresh = (out[i] as RowOutcome).status === "stored";
      if (fresh) {
        stored++;
        const first = v.rows[0];
        if (first) storedEventTimes.push(first.event_time);
      } else duplicates++;
    }
  });
  return { letters, stored, duplicates, storedEventTimes };
}
