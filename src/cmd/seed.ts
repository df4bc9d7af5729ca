import { SingleBar } from "cli-progress";
import type { DtypeName } from "../registry/dtype.ts";
import { prng } from "../lib/prng.ts";
import { TENANT_RE } from "../serving/keys.ts";
import { registerFeatures, type RegisterInput } from "../serving/register.ts";
import { prepareRows, storeRows, type WriteRecord } from "../serving/write.ts";
import { buildDeps, closeDeps, CliError, config, parseFlags, UsageError, type Command } from "./common.ts";

const DAY_MS = 86_400_000;
const EMBEDDING_DIM = 16;

/** The sample definitions: the original design's user features, plus an embedding. */
export const SEED_DEFINITIONS: RegisterInput[] = (
  [
    ["user_age", "int32", undefined, "Age of the user in years"],
    ["user_lifetime_value", "float64", 24, "Total spend of the user so far, USD"],
    ["user_country", "string", undefined, "ISO 3166-1 alpha-2 country code"],
    ["user_is_premium", "bool", 168, "Whether the user has a premium subscription"],
    ["user_orders_30d", "int32", 24, "Orders placed in the last 30 days"],
    ["user_avg_order_value", "float64", 24, "Average order value over the last 30 days, USD"],
    ["user_last_login", "timestamp", undefined, "Time of the user's last login"],
    ["user_embedding", "float32[]", undefined, `${EMBEDDING_DIM}-dimensional user embedding`],
  ] as [string, DtypeName, number | undefined, string][]
).map(([name, dtype, ttl, description]) => ({ name, version: 1, dtype, entity_type: "user", ttl_hours: ttl, description, owner: "seed" }));

const COUNTRIES = ["US", "GB", "DE", "FR", "IN", "BR", "JP", "CA", "AU", "ES", "NL", "SE"];


/** One user's daily history, oldest first: realistic, correlated values. */
function* userHistory(user: number, days: number, today: number): Generator<WriteRecord> {
  const rnd = prng(user * 7919 + 17);
  const id = `user_${user}`;
  const age = 18 + Math.floor(rnd() * 60);
  const country = COUNTRIES[Math.floor(rnd() * COUNTRIES.length)] as string;
  const spendRate = Math.exp(rnd() * 4) * 2; // log-normal-ish: a few heavy spenders
  const embedding = Array.from({ length: EMBEDDING_DIM }, () => rnd() * 2 - 1);
  const norm = Math.hypot(...embedding);
  let ltv = 0;
  let premium = rnd() < 0.15;
  const offset = Math.floor(rnd() * DAY_MS);
  for (let d = days - 1; d >= 0; d--) {
    const t = today - d * DAY_MS + offset;
    const orders = Math.floor(rnd() * spendRate * 2);
    const aov = Math.round((20 + rnd() * spendRate * 30) * 100) / 100;
    ltv = Math.round((ltv + orders * aov) * 100) / 100;
    if (rnd() < 0.02) premium = !premium;
    const features: Record<string, unknown> = {
      user_lifetime_value: ltv,
      user_is_premium: premium,
      user_orders_30d: Math.min(orders * 30, 10_000),
      user_avg_order_value: aov,
      user_last_login: new Date(t - Math.floor(rnd() * 3_600_000)).toISOString(),
    };
    if (d === days - 1) {
      features.user_age = age;
      features.user_country = country;
    }
    if (d === days - 1 || d % 7 === 0) features.user_embedding = embedding.map((x) => x / norm + (rnd() - 0.5) * 0.01);
    yield { entity_id: id, event_time: new Date(t).toISOString(), features };
  }
}

function positiveInt(name: string, v: string | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 10_000_000) throw new UsageError(`--${name} must be a whole number from 1 to 10000000`);
  return n;
}

export const command: Command = {
  summary: "generate sample definitions and values",
  help: `Usage: feature-store seed --users N --days D [--tenant T]

Registers the sample user features (user_age, user_lifetime_value, user_country, ...) for
tenant T (default "default") and writes D days of daily history for N users (user_1 ...
user_N), ending today, with a progress bar. The data is reproducible: seeding again on the same
day writes identical values, which are not stored twice.

Options:
  --users N   number of users (default 1000)
  --days D    days of history (default 30)
  --tenant T  tenant (default "default")`,
  async run(argv) {
    const { values, positionals } = parseFlags(argv, { users: { type: "string" }, days: { type: "string" }, tenant: { type: "string" } }, true);
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]}`);
    const users = positiveInt("users", values.users, 1000);
    const days = positiveInt("days", values.days, 30);
    const tenant = values.tenant ?? "default";
    if (!TENANT_RE.test(tenant)) throw new UsageError("--tenant must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$");

    const deps = await buildDeps(config());
    try {
      const { outcomes, ok } = await registerFeatures(deps, tenant, SEED_DEFINITIONS.map((input) => ({ input })));
      if (!ok) {
        const bad = outcomes.filter((o) => o.status === "conflict");
        throw new CliError(`tenant ${tenant} already has different definitions: ${bad.map((o) => o.reason).join("; ")}`);
      }
      const today = Math.floor(Date.now() / DAY_MS) * DAY_MS;
      const total = users * days;
      const tty = process.stderr.isTTY === true;
      const bar = tty ? new SingleBar({ format: "seed [{bar}] {percentage}% | {value}/{total} user-days | {eta}s left", hideCursor: true }) : undefined;
      bar?.start(total, 0);
      let done = 0;
      let lastPct = -1;
      let values_ = 0;
      const USERS_PER_BATCH = Math.max(1, Math.floor(2000 / days));
      for (let start = 1; start <= users; start += USERS_PER_BATCH) {
        const records: WriteRecord[] = [];
        for (let u = start; u < start + USERS_PER_BATCH && u <= users; u++) records.push(...userHistory(u, days, today));
        const { rows, defs } = prepareRows(deps, tenant, "user", records, Date.now());
        values_ += await storeRows(deps, tenant, "user", rows, defs);
        done += records.length;
        bar?.update(done);
        const pct = Math.floor((done / total) * 10) * 10;
        if (!tty && pct !== lastPct) {
          lastPct = pct;
          console.error(`seed: ${pct}% (${done}/${total} user-days)`);
        }
      }
      bar?.stop();
      console.log(`seeded tenant ${tenant}: ${SEED_DEFINITIONS.length} features, ${users} users, ${days} days, ${values_} values`);
      return 0;
    } finally {
      await closeDeps(deps);
    }
  },
};
