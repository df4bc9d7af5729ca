/**
 * The worker's view of Kafka, small enough that the client library can be swapped: a source
 * of records consumed in a group with explicit commits, and a sink for dead letters. The
 * kafkajs implementation is in kafkajs.ts; nothing else in src/stream imports a Kafka client.
 */

/** One consumed record. Key and value are the original bytes. */
export interface SourceRecord {
  topic: string;
  partition: number;
  /** offset of this record in its partition */
  offset: bigint;
  /** record timestamp, epoch milliseconds (CreateTime, or LogAppendTime when the topic says so) */
  timestamp: number;
  key: Uint8Array | null;
  value: Uint8Array | null;
  headers: RecordHeader[];
}

/** A record header (Kafka allows repeated names, so this is a list, not a map). */
export interface RecordHeader {
  name: string;
  value: Uint8Array;
}

/** A partition position: `offset` is the next offset to read (Kafka's commit convention). */
export interface PartitionOffset {
  topic: string;
  partition: number;
  offset: bigint;
}

/** What the source reports while it runs. */
export interface SourceHandlers {
  /**
   * Receives the records of one partition, in offset order. The source fetches nothing more
   * from that partition until the returned promise resolves (backpressure). `accepted` says
   * how many of `records` (a prefix) were taken; the others are delivered again later. Once
   * `active()` turns false (the delivery went stale: rebalance, shutdown), the handler should
   * resolve soon, accepting nothing more.
   */
  onRecords(records: SourceRecord[], highWatermark: bigint, active: () => boolean): Promise<{ accepted: number }>;
  /** The partitions assigned to this member after a (re)join of the group. */
  onAssignment(partitions: { topic: string; partition: number }[]): void;
  /** The source gave up for good (it does not restart by itself); the worker should exit. */
  onFatal(err: unknown): void;
}

/**
 * Records of one topic consumed in one consumer group, committed only explicitly. Several
 * sources in the same group share the partitions.
 */
export interface EventSource {
  /** Connects, joins the group and starts delivering records to `handlers`. */
  start(handlers: SourceHandlers): Promise<void>;
  /** Commits positions (next offsets to read). Throws when the commit was not accepted. */
  commit(offsets: PartitionOffset[]): Promise<void>;
  /** Stops fetching (the group membership is kept alive). */
  pause(): void;
  /** Fetches again after {@link pause}. */
  resume(): void;
  /** Stops fetching, waits for the delivery in progress, leaves the group and disconnects. */
  stop(): Promise<void>;
}

/** An invalid record on its way to the dead-letter topic. */
export interface DeadLetter {
  record: SourceRecord;
  /** one of the contract's error codes */
  code: string;
  /** what is wrong, for a person (no secrets) */
  detail: string;
}

/** Where invalid records go. */
export interface DeadLetterSink {
  /** Resolves only once every letter is durably written (acknowledged by all in-sync replicas). */
  send(letters: DeadLetter[]): Promise<void>;
  close(): Promise<void>;
}
