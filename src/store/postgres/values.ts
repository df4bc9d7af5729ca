/**
 * Values in PostgreSQL (the offline role): history range-partitioned by event time
 * (./partitions.ts) and the latest value per key (`online_values`), written in one statement
 * per chunk; set-based latest and point-in-time reads.
 */
import postgres from "postgres";
import type { Logger } from "../../log.ts";
import { StoreUnavailable } from "../errors.ts";
import type { AsOfKey, HistoryRow, RowOutcome, StoredRow, ValueKey, ValueWrite } from "../types.ts";
import { CHANGES_CHANNEL, type PostgresChangeFeed } from "./change-feed.ts";
import { byteaArray, numberArray, STORE_NAME, textArray, timed, type Querier, type Sql } from "./client.ts";
import type { PartitionManager } from "./partitions.ts";

/** Rows per write statement, and value bytes per statement (a protocol message is < 1 GiB). */
const WRITE_CHUNK_ROWS = 5_000;
const WRITE_CHUNK_BYTES = 64 << 20;
/** Keys per read statement. */
const READ_CHUNK_KEYS = 20_000;
/** From this many rows a write is staged with COPY and stored by one statement (see writeStaged). */
const STAGE_MIN_ROWS = 2_000;
/** Rows per piece of COPY data sent. */
const COPY_PIECE_ROWS = 4_096;
/** SQLSTATE of a unique violation (the identity index: a row identical to a stored one). */
const UNIQUE_VIOLATION = "23505";
/** The session's staging table of large writes (temporary: each connection has its own, emptied at commit). */
const STAGE = "fs_write_stage";

interface FoundRow {
  ord: number;
  event_time: number;
  seq: number;
  value: Uint8Array;
}

/** The identity of a stored value: two rows with the same one are the same value (a re-send). */
function identity(r: ValueWrite): string {
  return `${r.feature_id}\u0000${r.entity_id}\u0000${r.event_time}\u0000${Buffer.from(r.value_hash.buffer, r.value_hash.byteOffset, r.value_hash.byteLength).toString("hex")}`;
}

/** The signature, flags and header extension length of COPY's binary format. */
const COPY_BINARY_HEADER = Buffer.from("PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0", "latin1");
/** The end of COPY binary data (a tuple of field count -1). */
const COPY_BINARY_TRAILER = Buffer.from([0xff, 0xff]);
/** Bytes of one staged row in COPY binary besides its entity id and value: field count, six lengths, ord, feature_id, event_time, value_hash. */
const COPY_ROW_FIXED = 2 + 6 * 4 + 4 + 8 + 8 + 16;
const TWO_32 = 4_294_967_296;

/**
 * Rows [from, to) of a large write as tuples of COPY's binary format for the staging table
 * (ord integer, feature_id bigint, entity_id text, event_time bigint, value_hash bytea, value
 * bytea): one buffer, no text to escape or parse (hex bytea text cost a tenth of a bulk
 * write's CPU on each side).
 */
function copyBinary(rows: readonly ValueWrite[], from: number, to: number, head: boolean): Buffer {
  let size = head ? COPY_BINARY_HEADER.length : 0;
  for (let i = from; i < to; i++) {
    const r = rows[i] as ValueWrite;
    size += COPY_ROW_FIXED + 3 * r.entity_id.length + r.value.byteLength;
  }
  const buf = Buffer.allocUnsafe(size);
  let at = head ? COPY_BINARY_HEADER.copy(buf, 0) : 0;
  /** an int8 (a safe integer, negative too) */
  const int8 = (n: number) => {
    const hi = Math.floor(n / TWO_32);
    buf.writeInt32BE(hi, at);
    buf.writeUInt32BE(n - hi * TWO_32, at + 4);
    at += 8;
  };
  let lastId: string | undefined;
  let lastIdAt = 0;
  let lastIdLen = 0;
  for (let i = from; i < to; i++) {
    const r = rows[i] as ValueWrite;
    buf.writeInt16BE(6, at);
    buf.writeInt32BE(4, at + 2);
    buf.writeInt32BE(i, at + 6);
    buf.writeInt32BE(8, at + 10);
    at += 14;
    int8(r.feature_id);
    // a chunk holds several features of one entity in a row: its text is encoded once
    if (r.entity_id === lastId) {
      buf.writeInt32BE(lastIdLen, at);
      buf.copy(buf, at + 4, lastIdAt, lastIdAt + lastIdLen);
    } else {
      lastIdLen = buf.write(r.entity_id, at + 4, "utf8");
      buf.writeInt32BE(lastIdLen, at);
      lastId = r.entity_id;
    }
    lastIdAt = at + 4;
    at += 4 + lastIdLen;
    buf.writeInt32BE(8, at);
    at += 4;
    int8(r.event_time);
    buf.writeInt32BE(r.value_hash.byteLength, at);
    buf.set(r.value_hash, at + 4);
    at += 4 + r.value_hash.byteLength;
    buf.writeInt32BE(r.value.byteLength, at);
    buf.set(r.value, at + 4);
    at += 4 + r.value.byteLength;
  }
  return buf.subarray(0, at);
}

/** True when the server runs PostgreSQL 15 or later (MERGE). */
async function serverHasMerge(sql: Querier): Promise<boolean> {
  const [row] = await sql<{ v: number }[]>`SELECT current_setting('server_version_num')::int AS v`;
  return (row?.v ?? 0) >= 150_000;
}

/** Splits `items` into consecutive chunks of at most `size`. */
function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/**
 * The latest-value compare-and-set of every write path: the newest row per key of `source` (a
 * table or a CTE of rows just stored, with feature_id, entity_id, event_time, seq, value) into
 * online_values, replacing a stored row only when its (event_time, seq) is greater; the rows
 * taken in key order, so concurrent writers lock them in one order. A statement of its own, or
 * a data-modifying CTE of one (postgres.js nests it as a fragment).
 */
function upsertLatest(sql: Querier, source: string) {
  return sql`
    INSERT INTO online_values AS o (feature_id, entity_id, event_time, seq, value)
    SELECT DISTINCT ON (feature_id, entity_id) feature_id, entity_id, event_time, seq, value
    FROM ${sql(source)} ORDER BY feature_id, entity_id, event_time DESC, seq DESC
    ON CONFLICT (feature_id, entity_id) DO UPDATE
      SET event_time = excluded.event_time, seq = excluded.seq, value = excluded.value
      WHERE (excluded.event_time, excluded.seq) > (o.event_time, o.seq)`;
}

/** Writes and reads of values. */
export class PostgresValues {
  private readonly timed = <T>(what: string, p: Promise<T> & { cancel?: () => unknown }, ms = this.timeoutMs): Promise<T> => timed(what, p, ms);

  constructor(
    private readonly sql: Sql,
    private readonly log: Logger,
    private readonly partitions: PartitionManager,
    private readonly feed: PostgresChangeFeed,
    private readonly timeoutMs: number,
    /** the point-in-time reads' timeout (BULK_STORE_TIMEOUT_MS): client side and the statements' statement_timeout */
    private readonly bulkTimeoutMs: number = timeoutMs,
  ) {}

  /**
   * Runs a point-in-time read in one read-only snapshot whose statements may each take the bulk
   * timeout (the connection's statement_timeout is the online one).
   */
  private bulkRead(fn: (sql: Querier) => Promise<void>): Promise<void> {
    return this.sql.begin("isolation level repeatable read read only", async (sql) => {
      if (this.bulkTimeoutMs !== this.timeoutMs) await sql`SELECT set_config('statement_timeout', ${String(this.bulkTimeoutMs)}, true)`;
      await fn(sql);
    });
  }

  async writeValues(rows: ValueWrite[]): Promise<RowOutcome[]> {
    if (rows.length === 0) return [];
    try {
      await this.partitions.ensureFor(
        rows.map((r) => r.event_time),
        Date.now(),
      );
    } catch (err) {
      // the DEFAULT partition takes the rows; the next attempt or maintenance retries
      this.log.warn({ err }, "could not create partitions for a write");
    }
    if (rows.length >= STAGE_MIN_ROWS) return this.finish(rows, await this.writeStaged(rows), this.timeoutMs * Math.ceil(rows.length / WRITE_CHUNK_ROWS));
    const parts: { start: number; rows: ValueWrite[] }[] = [];
    let start = 0;
    let bytes = 0;
    for (let i = 0; i < rows.length; i++) {
      const size = (rows[i] as ValueWrite).value.byteLength;
      if (i > start && (i - start >= WRITE_CHUNK_ROWS || bytes + size > WRITE_CHUNK_BYTES)) {
        parts.push({ start, rows: rows.slice(start, i) });
        start = i;
        bytes = 0;
      }
      bytes += size;
    }
    parts.push({ start, rows: rows.slice(start) });

    // each statement may take the call timeout (the server's statement_timeout), so the whole
    // write gets one per statement: a bulk write is not cut short for being big
    const timeoutMs = this.timeoutMs * parts.length;
    const found: { index: number; seq: number }[] =
      parts.length === 1
        ? await this.timed("write values", this.writeChunk(this.sql, (parts[0] as (typeof parts)[number]).rows, 0), timeoutMs)
        : await this.timed(
            "write values",
            this.sql.begin(async (tx) => {
              const all: { index: number; seq: number }[] = [];
              for (const p of parts) all.push(...(await this.writeChunk(tx, p.rows, p.start)));
              return all;
            }),
            timeoutMs,
          );
    return this.finish(rows, found, timeoutMs);
  }

  /** The outcomes of a write from the rows it newly stored; the others are identical to stored rows. */
  private async finish(rows: ValueWrite[], found: { index: number; seq: number }[], timeoutMs: number): Promise<RowOutcome[]> {
    const out: (RowOutcome | undefined)[] = new Array(rows.length);
    for (const { index, seq } of found) out[index] = { seq, status: "stored" };
    if (found.length === rows.length) return out as RowOutcome[];
    const storedSeq = new Map<string, number>();
    for (const { index, seq } of found) storedSeq.set(identity(rows[index] as ValueWrite), seq);
    // the other rows are identical to a stored one: earlier in this write, or stored before it
    const before: number[] = [];
    for (let i = 0; i < rows.length; i++) {
      if (out[i] !== undefined) continue;
      const seq = storedSeq.get(identity(rows[i] as ValueWrite));
      if (seq !== undefined) out[i] = { seq, status: "identical" };
      else before.push(i);
    }
    if (before.length > 0) {
      const seqs = await this.timed("write values (identical rows)", this.storedSeqs(before.map((i) => rows[i] as ValueWrite)), timeoutMs);
      for (let j = 0; j < before.length; j++) {
        const seq = seqs[j];
        // only retention dropping the row in between gets here: a retry stores it again
        if (seq === undefined) throw new StoreUnavailable(STORE_NAME, "a value identical to a stored one vanished during the write; retry");
        out[before[j] as number] = { seq, status: "identical" };
      }
    }
    return out as RowOutcome[];
  }

  private async storedSeqs(rows: ValueWrite[]): Promise<(number | undefined)[]> {
    const out: (number | undefined)[] = new Array(rows.length);
    let offset = 0;
    for (const part of chunks(rows, READ_CHUNK_KEYS)) {
      const found = await this.sql<{ ord: number; seq: number }[]>`
        SELECT k.ord, f.seq
        FROM unnest(${numberArray(part.map((r) => r.feature_id))}::bigint[], ${textArray(part.map((r) => r.entity_id))}::text[],
                    ${numberArray(part.map((r) => r.event_time))}::bigint[], ${byteaArray(part.map((r) => r.value_hash))}::bytea[])
             WITH ORDINALITY AS k(feature_id, entity_id, event_time, value_hash, ord)
        JOIN feature_values f ON f.feature_id = k.feature_id AND f.entity_id = k.entity_id AND f.event_time = k.event_time AND f.value_hash = k.value_hash`;
      for (const r of found) out[offset + r.ord - 1] = r.seq;
      offset += part.length;
    }
    return out;
  }

  /**
   * A large write (materialize's chunks, big API writes) in one transaction of a few round
   * trips: the rows are streamed with COPY (binary) into the session's staging table, whose `seq`
   * default numbers them in input order as they arrive; then history is inserted from it in key order, the
   * greatest new value per key goes into online_values when it beats the stored one, the seqs
   * come back as one array, and one notification goes out. Same outcome as writeChunk, without
   * building array literals or one statement per 5,000 rows (measured on 200,000 rows: see
   * bench/materialize.ts).
   *
   * Usually no row is in history yet (a bulk load), and the fast path below stores every staged
   * row. A row identical to a stored one (a re-run, a replayed chunk, a duplicate in the batch)
   * fails its plain insert (unique violation), and so does a key another writer inserted into
   * online_values since MERGE's snapshot: back to the savepoint, and the statement that skips
   * identical rows and upserts stores the rest (writeStagedSlow).
   */
  private writeStaged(rows: ValueWrite[]): Promise<{ index: number; seq: number }[]> {
    // the same budget as writeChunk's statements together (one call timeout per 5,000 rows)
    const timeoutMs = this.timeoutMs * Math.ceil(rows.length / WRITE_CHUNK_ROWS);
    const run = this.sql.begin(async (tx) => {
      await tx.unsafe(`SET LOCAL statement_timeout = ${timeoutMs}`);
      // the statement's sorts stay in memory (the default 4 MB spills a 5,000-row batch to disk);
      // the staging table has no statistics: without this the planner may join it to the
      // inserted rows by a nested loop (measured: ANALYZE costs 100 ms per 50,000 rows);
      // no JIT: the staged rows' count puts the statement over jit_above_cost, and compiling
      // it (LLVM, on every execution) took a fifth of the backends' CPU in a bulk load
      await tx.unsafe("SET LOCAL work_mem = '64MB'; SET LOCAL enable_nestloop = off; SET LOCAL jit = off");
      await tx.unsafe(
        `CREATE TEMP TABLE IF NOT EXISTS ${STAGE} (ord integer NOT NULL, feature_id bigint NOT NULL, entity_id text NOT NULL, event_time bigint NOT NULL,
           value_hash bytea NOT NULL, value bytea NOT NULL, seq bigint NOT NULL DEFAULT nextval('feature_values_seq')) ON COMMIT DELETE ROWS`,
      );
      const copy = await tx.unsafe(`COPY ${STAGE} (ord, feature_id, entity_id, event_time, value_hash, value) FROM STDIN (FORMAT binary)`).writable();
      const done = new Promise<void>((resolve, reject) => {
        copy.on("finish", resolve);
        copy.on("error", reject);
      });
      for (let at = 0; at < rows.length; at += COPY_PIECE_ROWS) {
        const end = Math.min(rows.length, at + COPY_PIECE_ROWS);
        if (!copy.write(copyBinary(rows, at, end, at === 0))) await new Promise<void>((resolve) => copy.once("drain", resolve));
      }
      copy.end(COPY_BINARY_TRAILER);
      await done;
      this.merge ??= await serverHasMerge(tx);
      try {
        return await tx.savepoint((sp) => this.writeStagedFast(sp, rows.length));
      } catch (err) {
        if (!(err instanceof postgres.PostgresError && err.code === UNIQUE_VIOLATION)) throw err;
      }
      return this.writeStagedSlow(tx);
    });
    return this.timed("write values", run, timeoutMs);
  }

  /** PostgreSQL 15 or later (MERGE); found out on the first staged write. */
  private merge: boolean | undefined;

  /**
   * The staged rows, none identical to a stored one, into history and online_values (see
   * writeStaged). Fails with a unique violation when one is, or when another writer inserted a
   * key of online_values that MERGE's snapshot does not show.
   *
   * - History: a plain insert (no `ON CONFLICT`, which probes the identity index a second time
   *   per row in its speculative insertion: a fifth of the statement's CPU), in key order: it
   *   lays a write's rows out together on the heap for point-in-time reads of many keys, and
   *   takes the identity index's entries (so any waits on a writer storing the same values) in
   *   one order. Inserting in input order instead saved 1-3 us of the backend's ~19 per value
   *   in an isolated test, nothing visible in a whole load (README, session 9).
   * - online_values: the newest staged row per key (DISTINCT ON, in key order, so writers take
   *   the rows' locks in one order), by MERGE through a nested loop over the primary key: one
   *   index probe per key, then a HOT update when newer or an insert when new. `INSERT ... ON
   *   CONFLICT DO UPDATE` does the same probe through its arbiter check, and also locks each
   *   conflicting row (a WAL record per key) before updating it. MERGE reads online_values
   *   through its snapshot; a key another writer inserted meanwhile makes its insert fail with
   *   a unique violation (PostgreSQL does not retry MERGE), which takes the slow path; a row
   *   another writer updated meanwhile is re-checked by MERGE itself (its WHEN condition is
   *   evaluated again on the new version). Before PostgreSQL 15, the upsert.
   * - The answer: the seqs as one array in input order (a row per staged value cost the
   *   client ~1 us per value to parse).
   */
  private async writeStagedFast(sql: Querier, count: number): Promise<{ index: number; seq: number }[]> {
    await sql`INSERT INTO feature_values (feature_id, entity_id, event_time, seq, value_hash, value)
      SELECT feature_id, entity_id, event_time, seq, value_hash, value FROM ${sql(STAGE)}
      ORDER BY feature_id, entity_id, event_time, value_hash, seq`;
    if (this.merge) {
      // the planner has no statistics of the staging table: a hash join would read the whole
      // of online_values for every write
      await sql.unsafe("SET LOCAL enable_nestloop = on; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off");
      await sql`
        MERGE INTO online_values AS o
        USING (SELECT DISTINCT ON (feature_id, entity_id) feature_id, entity_id, event_time, seq, value
               FROM ${sql(STAGE)} ORDER BY feature_id, entity_id, event_time DESC, seq DESC) s
        ON o.feature_id = s.feature_id AND o.entity_id = s.entity_id
        WHEN MATCHED AND (s.event_time, s.seq) > (o.event_time, o.seq) THEN
          UPDATE SET event_time = s.event_time, seq = s.seq, value = s.value
        WHEN NOT MATCHED THEN
          INSERT (feature_id, entity_id, event_time, seq, value) VALUES (s.feature_id, s.entity_id, s.event_time, s.seq, s.value)`;
      // back to the session's settings for the rest of the transaction (the answer below)
      await sql.unsafe("SET LOCAL enable_nestloop TO DEFAULT; SET LOCAL enable_hashjoin TO DEFAULT; SET LOCAL enable_mergejoin TO DEFAULT");
    } else {
      await upsertLatest(sql, STAGE);
    }
    const [answer] = await sql<{ seqs: string }[]>`
      WITH notified AS MATERIALIZED (SELECT pg_notify(${CHANGES_CHANNEL}, ${this.feed.valuesPayload}))
      SELECT array_agg(seq ORDER BY ord)::text AS seqs FROM ${sql(STAGE)} LEFT JOIN notified ON true`;
    const text = answer?.seqs ?? "{}";
    const seqs = text.length > 2 ? text.slice(1, -1).split(",") : [];
    if (seqs.length !== count) throw new Error(`staged write: ${seqs.length} seqs for ${count} rows`);
    return seqs.map((seq, index) => ({ index, seq: Number(seq) }));
  }

  /**
   * The staged rows when some are identical to stored ones (or MERGE met a concurrent insert):
   * one statement inserts history in key order, skipping identical rows (an identical row,
   * stored before or earlier in the batch, is skipped by the identity index: the one with the
   * lowest seq, the earliest, is kept), upserts the greatest new value per key into
   * online_values when it beats the stored one, and notifies once.
   */
  private async writeStagedSlow(tx: Querier): Promise<{ index: number; seq: number }[]> {
    const found = await tx<{ ord: number; seq: number }[]>`
      WITH ins AS (
        INSERT INTO feature_values (feature_id, entity_id, event_time, seq, value_hash, value)
        SELECT feature_id, entity_id, event_time, seq, value_hash, value FROM ${tx(STAGE)}
        ORDER BY feature_id, entity_id, event_time, value_hash, seq
        ON CONFLICT (feature_id, entity_id, event_time, value_hash) DO NOTHING
        RETURNING feature_id, entity_id, event_time, seq, value
      ),
      up AS (${upsertLatest(tx, "ins")}),
      notified AS MATERIALIZED (
        SELECT pg_notify(${CHANGES_CHANNEL}, ${this.feed.valuesPayload}) FROM (SELECT 1 FROM ins LIMIT 1) x
      )
      SELECT s.ord, i.seq FROM ins i JOIN ${tx(STAGE)} s ON s.seq = i.seq LEFT JOIN notified ON true`;
    return found.map((r) => ({ index: r.ord, seq: r.seq }));
  }

  /**
   * One statement (atomic on its own): dedupes the batch, numbers the rows in input order,
   * inserts history (re-sends skipped by the identity index), upserts the greatest new value
   * per key into online_values when it beats the stored one, and notifies once.
   * Rows are inserted and locked in key order so concurrent batches cannot deadlock.
   */
  private async writeChunk(sql: Querier, rows: ValueWrite[], offset: number): Promise<{ index: number; seq: number }[]> {
    const result = await sql<{ ord: number; seq: number }[]>`
      WITH input AS (
        SELECT * FROM unnest(${numberArray(rows.map((r) => r.feature_id))}::bigint[], ${textArray(rows.map((r) => r.entity_id))}::text[],
                             ${numberArray(rows.map((r) => r.event_time))}::bigint[], ${byteaArray(rows.map((r) => r.value_hash))}::bytea[],
                             ${byteaArray(rows.map((r) => r.value))}::bytea[])
               WITH ORDINALITY AS t(feature_id, entity_id, event_time, value_hash, value, ord)
      ),
      firsts AS (
        SELECT DISTINCT ON (feature_id, entity_id, event_time, value_hash) *
        FROM input ORDER BY feature_id, entity_id, event_time, value_hash, ord
      ),
      numbered AS MATERIALIZED (
        SELECT f.*, nextval('feature_values_seq') AS seq FROM (SELECT * FROM firsts ORDER BY ord) f
      ),
      ins AS (
        INSERT INTO feature_values (feature_id, entity_id, event_time, seq, value_hash, value)
        SELECT feature_id, entity_id, event_time, seq, value_hash, value FROM numbered
        ORDER BY feature_id, entity_id, event_time, value_hash
        ON CONFLICT (feature_id, entity_id, event_time, value_hash) DO NOTHING
        RETURNING seq
      ),
      written AS MATERIALIZED (
        SELECT n.* FROM ins JOIN numbered n USING (seq)
      ),
      up AS (${upsertLatest(sql, "written")}),
      notified AS MATERIALIZED (
        SELECT pg_notify(${CHANGES_CHANNEL}, ${this.feed.valuesPayload}) FROM (SELECT 1 FROM written LIMIT 1) x
      )
      SELECT w.ord, w.seq FROM written w LEFT JOIN notified ON true ORDER BY w.seq`;
    return result.map((r) => ({ index: offset + r.ord - 1, seq: r.seq }));
  }

  async getLatest(keys: ValueKey[]): Promise<(StoredRow | null)[]> {
    const out: (StoredRow | null)[] = new Array<StoredRow | null>(keys.length).fill(null);
    let offset = 0;
    for (const part of chunks(keys, READ_CHUNK_KEYS)) {
      const rows = await this.timed(
        "latest lookup",
        this.sql<FoundRow[]>`
          SELECT k.ord, o.event_time, o.seq, o.value
          FROM unnest(${numberArray(part.map((k) => k.feature_id))}::bigint[], ${textArray(part.map((k) => k.entity_id))}::text[]) WITH ORDINALITY AS k(feature_id, entity_id, ord)
          JOIN online_values o ON o.feature_id = k.feature_id AND o.entity_id = k.entity_id`,
      );
      for (const r of rows) out[offset + r.ord - 1] = { event_time: r.event_time, seq: r.seq, value: r.value };
      offset += part.length;
    }
    return out;
  }

  async getAsOf(keys: AsOfKey[]): Promise<(StoredRow | null)[]> {
    if (keys.length === 0) return [];
    const out: (StoredRow | null)[] = new Array<StoredRow | null>(keys.length).fill(null);
    const parts = chunks(keys, READ_CHUNK_KEYS);
    const run = async (sql: Querier): Promise<void> => {
      let offset = 0;
      for (const part of parts) {
        for (const r of await this.asOfChunk(sql, part)) out[offset + r.ord - 1] = { event_time: r.event_time, seq: r.seq, value: r.value };
        offset += part.length;
      }
    };
    const span = this.partitions.span(Date.now());
    if (span && keys.some((k) => k.at < span.from)) {
      // training data reaching back past the recent partitions: see asOfHistory
      await this.timed(
        "point-in-time lookup",
        this.bulkRead(async (sql) => {
          let offset = 0;
          for (const part of parts) {
            for (const r of await this.asOfHistory(sql, part)) out[offset + r.ord - 1] = { event_time: r.event_time, seq: r.seq, value: r.value };
            offset += part.length;
          }
        }),
        this.bulkTimeoutMs,
      );
      return out;
    }
    // several statements read one snapshot, as SQLite's single read transaction does; one
    // statement needs a transaction only to take the bulk statement_timeout
    await this.timed("point-in-time lookup", parts.length === 1 && this.bulkTimeoutMs === this.timeoutMs ? run(this.sql) : this.bulkRead(run), this.bulkTimeoutMs);
    return out;
  }

  /**
   * See {@link OfflineStore.getHistory}. One statement, both lists as `= ANY` on the leading
   * columns of feature_values_identity, newest first per pair (reversed here). The planner's choice:
   * index scans (one descent per pair and partition) for a small read; a parallel sequential scan
   * and a sort when a read covers a large share of a partition (measured: 98,250 rows of 750,000
   * in 150 ms; a join with the unnested lists was a hash join, 236 ms).
   */
  async getHistory(featureIds: readonly number[], entityIds: readonly string[], upTo: number, limit: number): Promise<HistoryRow[]> {
    if (featureIds.length === 0 || entityIds.length === 0 || limit <= 0) return [];
    let rows: HistoryRow[] = [];
    await this.timed(
      "history read",
      this.bulkRead(async (sql) => {
        rows = (await sql`
          SELECT feature_id, entity_id, event_time, seq, value FROM feature_values
          WHERE feature_id = ANY(${numberArray(featureIds)}::bigint[]) AND entity_id = ANY(${textArray(entityIds)}::text[]) AND event_time <= ${upTo}
          ORDER BY feature_id, entity_id, event_time DESC, seq DESC
          LIMIT ${limit}`.values()) as unknown as HistoryRow[];
      }),
      this.bulkTimeoutMs,
    );
    // newest first per (feature, entity) -> oldest first
    for (let i = 0; i < rows.length; ) {
      const r = rows[i] as HistoryRow;
      let j = i + 1;
      while (j < rows.length && (rows[j] as HistoryRow)[0] === r[0] && (rows[j] as HistoryRow)[1] === r[1]) j++;
      for (let a = i, b = j - 1; a < b; a++, b--) {
        const t = rows[a] as HistoryRow;
        rows[a] = rows[b] as HistoryRow;
        rows[b] = t;
      }
      i = j;
    }
    return rows;
  }

  /**
   * Training data reaching back past the recent partitions, where asOfChunk's per-key probes
   * walk every partition and DEFAULT: one join of the keys with the history each can see, the
   * greatest (event_time, seq) per key kept; the planner picks the join (index nested loop with
   * run-time partition pruning, or a hash join when the history is small). Measured on 3 days of
   * history per key: 3.4 s -> 1.0-1.7 s per 20,000 keys (forcing a hash join gave 0.9 s, but it
   * scans all history per statement, which does not scale). Keys with long histories read every
   * row up to `at`: a merge of sorted keys with the index is what is left to do.
   */
  private asOfHistory(sql: Querier, keys: AsOfKey[]): Promise<FoundRow[]> {
    return sql<FoundRow[]>`
      SELECT DISTINCT ON (k.ord) k.ord, f.event_time, f.seq, f.value
      FROM unnest(${numberArray(keys.map((k) => k.feature_id))}::bigint[], ${textArray(keys.map((k) => k.entity_id))}::text[], ${numberArray(keys.map((k) => k.at))}::bigint[])
        WITH ORDINALITY AS k(feature_id, entity_id, at, ord)
      JOIN feature_values f ON f.feature_id = k.feature_id AND f.entity_id = k.entity_id AND f.event_time <= k.at
      ORDER BY k.ord, f.event_time DESC, f.seq DESC`;
  }

  /**
   * Set-based: one statement for the whole chunk. The online row is the greatest
   * (event_time, seq) of all history, so when its event time is not after `at` it is the
   * answer; only the other keys search the history index (the gated LATERALs do not run for
   * the rest), one index probe per partition at most, newest first.
   *
   * With a gap-free run of partitions [lo, hi) around now (see PartitionManager.span), `h`
   * searches only inside it, which the planner proves cannot touch DEFAULT, so it walks the
   * partitions newest first and stops at the first hit; `d` searches outside it (DEFAULT and
   * stray partitions) and runs only when `h` found nothing or `at` is beyond the run.
   */
  private asOfChunk(sql: Querier, keys: AsOfKey[]): Promise<FoundRow[]> {
    const keyRows = sql`unnest(${numberArray(keys.map((k) => k.feature_id))}::bigint[], ${textArray(keys.map((k) => k.entity_id))}::text[], ${numberArray(keys.map((k) => k.at))}::bigint[])
      WITH ORDINALITY AS k(feature_id, entity_id, at, ord)`;
    const span = this.partitions.span(Date.now());
    if (!span) {
      return sql<FoundRow[]>`
        SELECT k.ord,
               CASE WHEN o.event_time <= k.at THEN o.event_time ELSE h.event_time END AS event_time,
               CASE WHEN o.event_time <= k.at THEN o.seq ELSE h.seq END AS seq,
               CASE WHEN o.event_time <= k.at THEN o.value ELSE h.value END AS value
        FROM ${keyRows}
        JOIN online_values o ON o.feature_id = k.feature_id AND o.entity_id = k.entity_id
        LEFT JOIN LATERAL (
          SELECT f.event_time, f.seq, f.value FROM feature_values f
          WHERE o.event_time > k.at AND f.feature_id = k.feature_id AND f.entity_id = k.entity_id AND f.event_time <= k.at
          ORDER BY f.event_time DESC, f.seq DESC
          LIMIT 1
        ) h ON true
        WHERE o.event_time <= k.at OR h.seq IS NOT NULL`;
    }
    // literals, not parameters: plan-time pruning is what excludes DEFAULT (safe integers)
    const lo = sql.unsafe(String(Math.trunc(span.from)));
    const hi = sql.unsafe(String(Math.trunc(span.to)));
    return sql<FoundRow[]>`
      SELECT k.ord,
             CASE p.pick WHEN 0 THEN o.event_time WHEN 1 THEN h.event_time ELSE d.event_time END AS event_time,
             CASE p.pick WHEN 0 THEN o.seq WHEN 1 THEN h.seq ELSE d.seq END AS seq,
             CASE p.pick WHEN 0 THEN o.value WHEN 1 THEN h.value ELSE d.value END AS value
      FROM ${keyRows}
      JOIN online_values o ON o.feature_id = k.feature_id AND o.entity_id = k.entity_id
      LEFT JOIN LATERAL (
        SELECT f.event_time, f.seq, f.value FROM feature_values f
        WHERE o.event_time > k.at AND f.feature_id = k.feature_id AND f.entity_id = k.entity_id AND f.event_time <= k.at
          AND f.event_time >= ${lo} AND f.event_time < ${hi}
        ORDER BY f.event_time DESC, f.seq DESC
        LIMIT 1
      ) h ON true
      LEFT JOIN LATERAL (
        SELECT f.event_time, f.seq, f.value FROM feature_values f
        WHERE o.event_time > k.at AND (h.seq IS NULL OR k.at >= ${hi})
          AND f.feature_id = k.feature_id AND f.entity_id = k.entity_id AND f.event_time <= k.at
          AND (f.event_time < ${lo} OR f.event_time >= ${hi})
        ORDER BY f.event_time DESC, f.seq DESC
        LIMIT 1
      ) d ON true
      CROSS JOIN LATERAL (
        SELECT CASE
          WHEN o.event_time <= k.at THEN 0
          WHEN d.seq IS NOT NULL AND (h.seq IS NULL OR (d.event_time, d.seq) > (h.event_time, h.seq)) THEN 2
          WHEN h.seq IS NOT NULL THEN 1
        END AS pick
      ) p
      WHERE p.pick IS NOT NULL`;
  }
}
