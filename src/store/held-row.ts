/**
 * A latest value as an online store held in this process keeps it (the in-process cache, the
 * Redis near cache: the stores with `stableRows`), with room for what the online path remembers
 * of it. Such a store hands out the same object on every hit for as long as the value is current,
 * so the serving layer memoises the value's JSON text (and, on an entity's first row, the whole
 * entity's rendered result) in these fields, and the memo goes with the row when the store drops
 * it.
 *
 * Why fields and not WeakMaps keyed by the row (as until session 10): a WeakMap is an ephemeron
 * table, and JavaScriptCore walks every entry of a live one on every collection, the small (eden)
 * ones included. With 20,000 entities x 10 values memoised, an eden collection of the serving
 * thread took 25-26 ms instead of 0.6-1.0 ms (bench/gc-pause.ts), and Bun's GC timer runs one
 * about once a second while the heap changes: that was the embedded server's stall once a
 * second (README, "Hot path, cold start and every core"). Plain fields cost the collector
 * nothing beyond the objects they point to.
 *
 * The fields start `undefined` (every row of this class has one shape, so the serving code's
 * property reads stay monomorphic); only the serving layer writes them, never a store.
 */
import type { StoredRow } from "./types.ts";

export class HeldRow implements StoredRow {
  /** The value's JSON text (serving/online.ts), once rendered. */
  json: string | undefined = undefined;
  /** The value's JSON form, once decoded (serving/features.ts; `undefined`: not yet). */
  form: unknown = undefined;
  /**
   * What the online path remembers of the rendered result of the entity whose first requested
   * value this is (serving/online.ts `EntityText`; typed there, opaque here).
   */
  entity: unknown = undefined;

  constructor(
    public event_time: number,
    public seq: number,
    public value: Uint8Array,
  ) {}
}

/** `row` as a {@link HeldRow}: itself when it is one, else a new one over the same bytes. */
export function heldRow(row: StoredRow): HeldRow {
  return row instanceof HeldRow ? row : new HeldRow(row.event_time, row.seq, row.value);
}
