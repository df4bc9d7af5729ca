/** Small builders shared by the store contract suites. */
import type { NewDefinition, ValueWrite } from "../../../src/store/types.ts";

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
