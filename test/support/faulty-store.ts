/**
 * A fault-injecting offline store: delegates to a real one (the embedded database in tests) and
 * fails `writeValues` (or the reads `getLatest`, `getAsOf` and `getHistory`) calls as a test decides: a store outage
 * ({@link StoreUnavailable}) or a deterministic failure of any other kind. Counts the calls it saw.
 */
import type { AsOfKey, OfflineStore, ValueKey, ValueWrite } from "../../src/store/types.ts";

/** Decides, per call, whether `writeValues(rows)` fails and how; undefined lets it through. */
export type WriteFault = (rows: readonly ValueWrite[], call: number) => Error | undefined;

export class FaultyOfflineStore implements OfflineStore {
  /** `writeValues` calls so far (failed ones included) */
  writeCalls = 0;
  fault: WriteFault | undefined;

  constructor(private readonly inner: OfflineStore) {}

  async writeValues(rows: ValueWrite[]) {
    const err = this.fault?.(rows, this.writeCalls++);
    if (err) throw err;
    return this.inner.writeValues(rows);
  }

  /** Decides whether a latest read (`getLatest(keys)`: the online lookups' database reads) fails; undefined lets it through. */
  latestFault: ((keys: readonly ValueKey[]) => Error | undefined) | undefined;

  getLatest: OfflineStore["getLatest"] = async (keys) => {
    const err = this.latestFault?.(keys);
    if (err) throw err;
    return this.inner.getLatest(keys);
  };
  /** Decides whether a point-in-time read fails (`getAsOf(keys)`; `getHistory` passes no keys); undefined lets it through. */
  asOfFault: ((keys: readonly AsOfKey[]) => Error | undefined) | undefined;

  getHistory: OfflineStore["getHistory"] = async (featureIds, entityIds, upTo, limit) => {
    const err = this.asOfFault?.([]);
    if (err) throw err;
    return this.inner.getHistory(featureIds, entityIds, upTo, limit);
  };

  getAsOf: OfflineStore["getAsOf"] = async (keys) => {
    const err = this.asOfFault?.(keys);
    if (err) throw err;
    return this.inner.getAsOf(keys);
  };
  ping = () => this.inner.ping();
  close = () => this.inner.close();
}
