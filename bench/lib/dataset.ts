/**
 * The benchmark's data set: 10 features of an entity type `user`, one of every common dtype,
 * deterministic values for N entities over D days, and the request bodies of each scenario.
 */

/** Tenant, entity type and the 10 features (name, dtype, ttl_hours). */
export const TENANT = "bench";
export const ENTITY_TYPE = "user";
export const FEATURES: { name: string; dtype: string; ttl_hours?: number }[] = [
  { name: "age", dtype: "int32" },
  { name: "lifetime_value", dtype: "float64", ttl_hours: 24 * 365 },
  { name: "country", dtype: "string" },
  { name: "is_premium", dtype: "bool", ttl_hours: 24 * 365 },
  { name: "orders_30d", dtype: "int32" },
  { name: "avg_order_value", dtype: "float32" },
  { name: "last_login", dtype: "timestamp" },
  { name: "embedding", dtype: "float32[]" },
  { name: "clicks_total", dtype: "int64" },
  { name: "segments", dtype: "string[]" },
];
export const FEATURE_NAMES = FEATURES.map((f) => f.name);
export const EMBEDDING_DIM = 16;
const DAY_MS = 86_400_000;
const COUNTRIES = ["US", "GB", "DE", "FR", "IN", "BR", "JP", "CA", "AU", "ES", "NL", "SE"];
const SEGMENTS = ["new", "returning", "vip", "churn_risk", "mobile", "desktop", "deal_seeker"];

/** The `register FILE.yaml` document (YAML is a superset of JSON). */
export function registerYaml(): string {
  return JSON.stringify({ features: FEATURES.map((f) => ({ ...f, version: 1, entity_type: ENTITY_TYPE, owner: "bench" })) }, null, 2);
}

import { prng } from "../../src/lib/prng.ts";

export { prng };

export function entityId(i: number): string {
  return `user_${i}`;
}

/** Event time of day `d` (0 = oldest) of `days`, ending shortly before `now`. */
export function eventTime(d: number, days: number, now: number): number {
  return now - (days - 1 - d) * DAY_MS - 60_000;
}

/** One write record: every feature of entity `i` at day `d`. */
export function record(i: number, d: number, days: number, now: number): { entity_id: string; event_time: string; features: Record<string, unknown> } {
  const rnd = prng(i * 7919 + d * 104729 + 17);
  const t = eventTime(d, days, now);
  return {
    entity_id: entityId(i),
    event_time: new Date(t).toISOString(),
    features: {
      age: 18 + (i % 60),
      lifetime_value: Math.round(rnd() * 1e6) / 100,
      country: COUNTRIES[i % COUNTRIES.length],
      is_premium: rnd() < 0.15,
      orders_30d: Math.floor(rnd() * 40),
      avg_order_value: Math.round(rnd() * 20000) / 100,
      last_login: new Date(t - Math.floor(rnd() * 3_600_000)).toISOString(),
      embedding: Array.from({ length: EMBEDDING_DIM }, () => Math.round((rnd() * 2 - 1) * 1e4) / 1e4),
      clicks_total: Math.floor(rnd() * 1e9),
      segments: [SEGMENTS[i % SEGMENTS.length], SEGMENTS[(i * 3 + d) % SEGMENTS.length]],
    },
  };
}

/** Body of an online request for one entity. */
export function onlineOne(i: number): string {
  return JSON.stringify({ entity_id: entityId(i), feature_names: FEATURE_NAMES });
}

/** Body of an online request for many entities. */
export function onlineMany(ids: number[]): string {
  return JSON.stringify({ entity_ids: ids.map(entityId), feature_names: FEATURE_NAMES });
}

/** Body of a point-in-time batch request: one timestamp per row, spread over the history. */
export function batchRows(ids: number[], days: number, now: number, rnd: () => number): string {
  const oldest = eventTime(0, days, now);
  const span = now - oldest;
  return JSON.stringify({
    rows: ids.map((i) => ({ entity_id: entityId(i), timestamp: new Date(oldest + Math.floor(rnd() * span)).toISOString() })),
    feature_names: FEATURE_NAMES,
  });
}

/**
 * A Zipf(s) sampler over ranks 0..n-1 (rank 0 the most popular), by inverse CDF on a
 * precomputed table. The rank is mapped through a fixed permutation so hot keys are spread
 * over the key space rather than being the first ids.
 */
export function zipfSampler(n: number, s: number, rnd: () => number): () => number {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let k = 0; k < n; k++) {
    sum += 1 / (k + 1) ** s;
    cdf[k] = sum;
  }
  for (let k = 0; k < n; k++) cdf[k] = (cdf[k] as number) / sum;
  const perm = Array.from({ length: n }, (_, k) => k);
  const prand = prng(4242);
  for (let k = n - 1; k > 0; k--) {
    const j = Math.floor(prand() * (k + 1));
    [perm[k], perm[j]] = [perm[j] as number, perm[k] as number];
  }
  return () => {
    const u = rnd();
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((cdf[mid] as number) < u) lo = mid + 1;
      else hi = mid;
    }
    return perm[lo] as number;
  };
}
