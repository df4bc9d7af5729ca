/** Small builders shared by the store contract suites. */
import type { AsOfKey, NewDefinition, ValueWrite } from "../../../src/store/types.ts";

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
/** A 16-byte digest stand-in: distinct values get distinct hashes. */
export const hashOf = (v: Uint8Array): Uint8Array => new Uint8Array(new Bun.CryptoHasher("md5").update(v).digest());
export const val = (feature_id: number, entity_id: string, event_time: number, text: string): ValueWrite => {
  const value = enc(text);
  return { feature_id, entity_id, event_time, value, value_hash: hashOf(value) };
};
export const text = (v: Uint8Array | undefined): string | undefined => (v === undefined ? undefined : new TextDecoder().decode(v));

export const def = (tenant: string, name: string, version: number, extra: Partial<NewDefinition> = {}): NewDefinition => ({
  tenant,
  name,
  version,
  dtype: "int64",
  entity_type: "user",
  ttl_hours: null,
  description: null,
  owner: null,
  tags: {},
  created_at: 1_000,
  updated_at: 1_000,
  ...extra,
});

const DAY = 86_400_000;

/**
 * Values of one key spread over months, the far past and the far future (on PostgreSQL: several
 * partitions and DEFAULT), with as-of keys just before and at each, and the expected answers.
 */
export function acrossMonths(now: number): { rows: ValueWrite[]; keys: AsOfKey[]; expected: (string | null)[] } {
  const times = [Date.UTC(1990, 5, 1), now - 400 * DAY, now - 40 * DAY, now - DAY, now + 200 * DAY, Date.UTC(2150, 0, 1)];
  const keys: AsOfKey[] = [];
  const expected: (string | null)[] = [];
  times.forEach((t, i) => {
    keys.push({ feature_id: 1, entity_id: "e", at: t - 1 }, { feature_id: 1, entity_id: "e", at: t });
    expected.push(i === 0 ? null : `v${i - 1}`, `v${i}`);
  });
  return { rows: times.map((t, i) => val(1, "e", t, `v${i}`)), keys, expected };
}
