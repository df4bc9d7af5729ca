/**
 * The embedded store's bulk write (`writeValues`), set-based: multi-row statements instead of
 * two statements per value (issue 14: `materialize` spent 20 s of 25 s there, one INSERT and one
 * upsert per value). History is one B-tree clustered on the identity of a value (migration
 * 0006): an insert writes one B-tree entry, not a row and two index entries.
 *
 * Inside the caller's IMMEDIATE transaction (the write lock is held, so no other connection
 * assigns sequences meanwhile):
 * 1. the rows are ordered by (feature, entity, event time), ties in input order
 *    ({@link keyOrder}: neighbouring B-tree entries are written together);
 * 2. row i is inserted with sequence `next + i` (`next`: value_sequence, after the greatest ever
 *    assigned; moved past the call's when it stored a row), many rows per statement,
 *    `INSERT OR IGNORE`. An identical row (stored before, or earlier in the call: the sort keeps
 *    identical rows in input order, so the earlier one is inserted first) is not inserted; when
 *    a statement inserted fewer rows than it had, its rows are looked up to tell which;
 * 3. a row not inserted is answered with the sequence of the identical stored row.
 * There is no second table to keep in step: the latest value of a key is the newest row of its
 * history (migration 0007; the offline store's `getLatest` reads it). The compare-and-set
 * upsert into a latest-value table this writer ran before (the newest stored row of the call
 * per key, many rows per statement) was a third of `materialize`'s store time: 500,000 rows x 4
 * features, 2,000,000 values, storing 11.8-12.0 s -> 7.8-8.3 s, 157,778-161,668 -> 223,989-240,327
 * values/s (session 10, two same-run pairs, load average 1.5-1.7).
 * The insert is `OR IGNORE` (issue 14, materialize speed): a multi-row statement that may
 * abort halfway (a NOT NULL constraint's default, ABORT) makes SQLite copy every page it changes
 * to a statement journal first, a temp file (`materialize` of 500,000 rows x 4 features, with
 * the former TEMP trigger and ON CONFLICT DO NOTHING: 424,350 writes, 830 MiB, to it; the
 * process's writes 914,953 -> 517,625 with these). No row here has a NULL; one would be left
 * out, found missing in step 2's look-up, and fail the call.
 * The sequences of identical rows are skipped (as a PostgreSQL sequence skips them); those of
 * stored rows grow in input order.
 *
 * The rows come as columns ({@link ValueColumns}) with their key order, so a caller on another
 * thread (materialize's store thread) sends them packed and sorted, and the writing thread binds
 * the statements' parameters straight from them.
 */
import type { Database as Sqlite, Statement } from "bun:sqlite";
import type { ValueWrite } from "../types.ts";

/** Rows per multi-row statement: 6 parameters each, well under SQLite's 32,766. */
const BATCH = 256;

/** The rows of one write as columns, in input order. */
export interface ValueColumns {
  n: number;
  featureIds: ArrayLike<number>;
  entityIds: readonly string[];
  eventTimes: ArrayLike<number>;
  /** packed stored forms */
  values: readonly Uint8Array[];
  /** 16-byte digests of `values` */
  hashes: readonly Uint8Array[];
}

/** What each input row became: `stored[i]` 1 (newly stored under `seqs[i]`) or 0 (identical to the stored row `seqs[i]`). */
export interface WrittenColumns {
  seqs: Float64Array<ArrayBuffer>;
  stored: Uint8Array<ArrayBuffer>;
  /** rows stored */
  count: number;
}

/** `rows` as {@link ValueColumns} (no copy of their bytes). */
export function columnsOf(rows: readonly ValueWrite[]): ValueColumns {
  const n = rows.length;
  const featureIds = new Array<number>(n);
  const entityIds = new Array<string>(n);
  const eventTimes = new Array<number>(n);
  const values = new Array<Uint8Array>(n);
  const hashes = new Array<Uint8Array>(n);
  for (let i = 0; i < n; i++) {
    const r = rows[i] as ValueWrite;
    featureIds[i] = r.feature_id;
    entityIds[i] = r.entity_id;
    eventTimes[i] = r.event_time;
    values[i] = r.value;
    hashes[i] = r.value_hash;
  }
  return { n, featureIds, entityIds, eventTimes, values, hashes };
}

/**
 * The input positions of `c`'s rows in (feature, entity, event time) order, ties in input order:
 * neighbouring B-tree entries are written together, and each key's rows are consecutive.
 */
export function keyOrder(c: Pick<ValueColumns, "n" | "featureIds" | "entityIds" | "eventTimes">): Int32Array<ArrayBuffer> {
  const { featureIds: f, entityIds: e, eventTimes: t } = c;
  const order = Array.from({ length: c.n }, (_, i) => i);
  order.sort((x, y) => {
    const df = (f[x] as number) - (f[y] as number);
    if (df !== 0) return df;
    const a = e[x] as string;
    const b = e[y] as string;
    if (a !== b) return a < b ? -1 : 1;
    return (t[x] as number) - (t[y] as number) || x - y;
  });
  return Int32Array.from(order);
}

type Param = string | number | Uint8Array;

/**
 * The parameters of the rows `rows[at]` .. `rows[at + n - 1]` (input positions of `c`), one
 * array for one statement: feature, entity, event time, sequence, value, value hash (the
 * history insert's columns).
 */
function rowParams(c: ValueColumns, seqs: Float64Array, rows: ArrayLike<number>, at: number, n: number): Param[] {
  const params: Param[] = new Array(n * 6);
  let p = 0;
  for (let k = at; k < at + n; k++) {
    const i = rows[k] as number;
    params[p++] = c.featureIds[i] as number;
    params[p++] = c.entityIds[i] as string;
    params[p++] = c.eventTimes[i] as number;
    params[p++] = seqs[i] as number;
    params[p++] = c.values[i] as Uint8Array;
    params[p++] = c.hashes[i] as Uint8Array;
  }
  return params;
}

export class SqliteValueWriter {
  private readonly inserts = new Map<number, Statement>();
  private readonly nextSeq: Statement;
  private readonly setNextSeq: Statement;
  private readonly existingSeq: Statement;

  constructor(private readonly db: Sqlite) {
    // the sequence after the greatest ever assigned (migration 0006 started it past every stored one)
    this.nextSeq = db.prepare("SELECT next FROM value_sequence WHERE id = 1");
    this.setNextSeq = db.prepare("UPDATE value_sequence SET next = ? WHERE id = 1");
    this.existingSeq = db.prepare("SELECT seq FROM feature_values WHERE feature_id = ? AND entity_id = ? AND event_time = ? AND value_hash = ?");
  }

  /** The history insert of `n` rows (`n` a power of two up to BATCH), prepared once. */
  private insert(n: number): Statement {
    let st = this.inserts.get(n);
    if (!st) {
      const rows = Array(n).fill("(?, ?, ?, ?, ?, ?)").join(", ");
      st = this.db.prepare(`INSERT OR IGNORE INTO feature_values (feature_id, entity_id, event_time, seq, value, value_hash) VALUES ${rows}`);
      this.inserts.set(n, st);
    }
    return st;
  }

  /** Calls `run(at, n)` over [0, count) in slices of BATCH, the remainder in power-of-two slices. */
  private static sliced(count: number, run: (at: number, n: number) => void): void {
    let at = 0;
    for (let n = BATCH; n >= 1; n >>= 1) {
      while (count - at >= n) {
        run(at, n);
        at += n;
      }
    }
  }

  /**
   * Stores the rows of `c` inside the caller's transaction, `order` their {@link keyOrder};
   * answers what each row became, in input order.
   */
  write(c: ValueColumns, order: ArrayLike<number>): WrittenColumns {
    const { n: count, featureIds, entityIds, eventTimes, hashes } = c;
    // 2. insert every row, in key order, with sequence base + its input position; an identical
    // row (stored before, or earlier in this call) is not inserted
    const base = (this.nextSeq.get() as { next: number }).next;
    const stored = new Uint8Array(count);
    // the sequence of each row: its own when stored, else (3.) the identical stored row's
    const seqs = new Float64Array(count);
    for (let i = 0; i < count; i++) seqs[i] = base + i;
    SqliteValueWriter.sliced(count, (at, n) => {
      // Without RETURNING (measured: a third faster): when every row was inserted, `changes`
      // says so; otherwise each row of the slice is looked up, and the stored row it finds is
      // either itself (inserted now, under its own sequence) or the one it repeats. The
      // parameters go as one array (not spread: cheaper).
      if (this.insert(n).run(rowParams(c, seqs, order, at, n)).changes === n) {
        for (let o = at; o < at + n; o++) stored[order[o] as number] = 1;
        return;
      }
      for (let o = at; o < at + n; o++) {
        const i = order[o] as number;
        const found = this.existingSeq.get(featureIds[i] as number, entityIds[i] as string, eventTimes[i] as number, hashes[i] as Uint8Array) as { seq: number } | null;
        if (!found) throw new Error("a value conflicted with a stored one that cannot be found (feature_values_identity)");
        if (found.seq === base + i) stored[i] = 1;
        else seqs[i] = found.seq;
      }
    });

    let storedCount = 0;
    for (let i = 0; i < count; i++) storedCount += stored[i] as number;
    if (storedCount > 0) this.setNextSeq.run(base + count);

    return { seqs, stored, count: storedCount };
  }
}
