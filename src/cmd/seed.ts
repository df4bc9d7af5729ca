import { SingleBar } from "cli-progress";
import type { DtypeName } from "../registry/dtype.ts";
import { prng } from "../lib/prng.ts";
import { formatTime } from "../lib/time.ts";
import type { Deps } from "../serving/deps.ts";
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


/**
 * One user's daily history, oldest first: realistic, correlated values. Event times lie on a
 * fixed grid: the value of day k is at k's midnight UTC plus the user's time-of-day offset, for
 * the `days` days ending on `today`. Points after `now` are left out: only today's can be, and
 * it is the last, so every point at or before `now` gets the same value whichever time of the
 * day the history is generated (seeding again the same day re-sends identical values).
 */
function* userHistory(user: number, days: number, today: number, now: number): Generator<WriteRecord> {
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
    if (t > now) return;
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
    // pinned versions: a later version of a name (another dtype, say) never receives seed values
    yield { entity_id: id, event_time: new Date(t).toISOString(), features: Object.fromEntries(Object.entries(features).map(([k, v]) => [`${k}@1`, v])) };
  }
}

/**
 * Registers the sample definitions the tenant does not have; existing ones are left exactly as
 * they are (description, owner and tags included). An existing one with another dtype, entity
 * type or TTL is an error: the sample values would not fit it. Returns how many were registered.
 * (The check reads this process's registry snapshot: a sample definition another process
 * registers in the moment between it and the registration would get the sample metadata.)
 */
async function registerMissing(deps: Deps, tenant: string): Promise<number> {
  const missing: RegisterInput[] = [];
  const clashes: string[] = [];
  for (const want of SEED_DEFINITIONS) {
    const r = deps.registry.current.resolve(tenant, `${want.name}@${want.version}`);
    if (r.kind !== "ok") {
      missing.push(want);
      continue;
    }
    const have = r.def;
    const wantTtl = want.ttl_hours ?? null;
    if (have.dtype !== want.dtype || have.entity_type !== want.entity_type || have.ttl_hours !== wantTtl) {
      clashes.push(`${want.name}@${want.version} is ${have.dtype}/${have.entity_type}/ttl ${have.ttl_hours ?? "none"}, seed needs ${want.dtype}/${want.entity_type}/ttl ${wantTtl ?? "none"}`);
    }
  }
  if (clashes.length > 0) throw new CliError(`tenant ${tenant} already has different definitions: ${clashes.join("; ")}`);
  if (missing.length === 0) return 0;
  const { outcomes, ok } = await registerFeatures(deps, tenant, missing.map((input) => ({ input })));
  if (!ok) {
    const bad = outcomes.filter((o) => o.status === "conflict");
    throw new CliError(`tenant ${tenant} already has different definitions: ${bad.map((o) => o.reason).join("; ")}`);
  }
  return outcomes.filter((o) => o.status === "new").length;
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

Registers the sample user features (user_age, user_lifetime_value, user_country, ...) that
tenant T (default "default") does not have yet, leaving existing definitions and their
metadata as they are, and writes D days of daily history for N users (user_1 ... user_N),
with a progress bar.

Each user's values lie on a fixed daily grid: one per day at the same time of day (a
per-user offset from midnight UTC), for the D days ending today, and only the points at or
before the moment of seeding: nothing is dated in the future. A user's value of today thus
exists once its time of day has passed (with --days 1 the other users get none yet).

The data is reproducible: seeding again the same UTC day re-sends identical values, which
are not stored twice, and stores only the points whose time has come since. Seeding on a
later day writes a new history ending that day, on the same grid: its values win over the
earlier seed's at the same times (the value written last), and older points stay. The last
line says how many values were newly stored and how many were already stored.

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
      const registered = await registerMissing(deps, tenant);
      const now = deps.clock.now();
      const today = Math.floor(now / DAY_MS) * DAY_MS;
      const tty = process.stderr.isTTY === true;
      const bar = tty ? new SingleBar({ format: "seed [{bar}] {percentage}% | {value}/{total} users | {eta}s left", hideCursor: true }) : undefined;
      bar?.start(users, 0);
      let lastTenth = -1;
      let stored = 0;
      let resent = 0;
      const USERS_PER_BATCH = Math.max(1, Math.floor(2000 / days));
      for (let start = 1; start <= users; start += USERS_PER_BATCH) {
        const end = Math.min(users, start + USERS_PER_BATCH - 1);
        const records: WriteRecord[] = [];
        for (let u = start; u <= end; u++) records.push(...userHistory(u, days, today, now));
        const { rows, defs } = prepareRows(deps, tenant, "user", records, now);
        const r = await storeRows(deps, tenant, "user", rows, defs);
        stored += r.stored;
        resent += r.accepted - r.stored;
        bar?.update(end);
        const pct = Math.floor((end * 100) / users);
        if (!tty && (Math.floor(pct / 10) !== lastTenth || end === users)) {
          lastTenth = Math.floor(pct / 10);
          console.error(`seed: ${pct}% (${end}/${users} users)`);
        }
      }
      bar?.stop();
      console.log(
        `seeded tenant ${tenant}: ${SEED_DEFINITIONS.length} features (${registered} newly registered), ${users} users, ${days} days up to ${formatTime(now)}: ` +
          `${stored} new values stored, ${resent} already stored`,
      );
      return 0;
    } finally {
      await closeDeps(deps);
    }
  },
};
