/**
 * API keys: generation (only the SHA-256 is stored), scopes, and the in-memory key ring that
 * authenticates requests without a query (reloaded when the change feed reports key changes).
 */
import { AppError } from "../errors.ts";
import type { Clock } from "../lib/time.ts";
import type { KeyRow, RegistryStore } from "../store/types.ts";

/** Random bytes from the global Web Crypto (node:crypto costs ~2.5 ms to load at start). */
function randomBytes(n: number): Buffer {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(n)));
}

/** Scopes, each including the ones before it. */
export const SCOPES = ["read", "write", "admin"] as const;
export type Scope = (typeof SCOPES)[number];

/** Tenant names. */
export const TENANT_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$";
export const TENANT_RE = new RegExp(TENANT_PATTERN);

/** Whether granted scopes allow `needed` (admin > write > read). */
export function hasScope(granted: readonly string[], needed: Scope): boolean {
  const rank = SCOPES.indexOf(needed);
  return granted.some((s) => SCOPES.indexOf(s as Scope) >= rank);
}

/** hex SHA-256 of a presented key. */
export function hashKey(key: string): string {
  return new Bun.CryptoHasher("sha256").update(key).digest("hex");
}

/** Presented keys whose digest {@link KeyRing} remembers, at most (then it starts over). */
const DIGEST_MEMO_MAX = 1024;

/** The shape of every key {@link generateKey} makes; anything else is refused without a lookup. */
export const KEY_FORMAT = /^fs_[A-Za-z0-9_-]{43}$/;

/** A new key: the secret (shown once) and the record to store. */
export function generateKey(tenant: string, scopes: Scope[], now: number, expiresAt: number | null): { key: string; row: KeyRow } {
  const key = `fs_${randomBytes(32).toString("base64url")}`;
  return {
    key,
    row: {
      id: `key_${randomBytes(8).toString("hex")}`,
      tenant,
      scopes: [...new Set(scopes)].sort((a, b) => SCOPES.indexOf(a) - SCOPES.indexOf(b)),
      hash: hashKey(key),
      prefix: key.slice(0, 7),
      created_at: now,
      expires_at: expiresAt,
      revoked_at: null,
    },
  };
}

/** Who a request authenticated as. */
export interface Principal {
  keyId: string;
  tenant: string;
  scopes: readonly string[];
}

/** Limits of {@link KeyRing.lookup}, the database check of keys the ring does not know yet. */
export interface KeyLookupOptions {
  /** Database reads for unknown keys per second, at most (each read serves every key waiting for it). */
  readsPerSecond: number;
  /** How long a key the database did not know is answered 401 without another read, ms. */
  negativeTtlMs: number;
  /** Unknown key hashes remembered at most (oldest forgotten first). */
  negativeMax: number;
  /** Requests waiting for a read at most; more get 503 `unavailable` with `Retry-After: 1`. */
  maxWaiting: number;
}

/** Defaults of {@link KeyLookupOptions} (documented in the README, Concepts: tenants and keys). */
export const KEY_LOOKUP_DEFAULTS: KeyLookupOptions = { readsPerSecond: 10, negativeTtlMs: 5000, negativeMax: 10_000, maxWaiting: 256 };

/**
 * Every key by hash, in memory (revoked ones too, so that they are refused without a query).
 * Known keys are answered from memory. A key the ring does not know may have been created by
 * another process a moment ago (the change feed reloads the ring within a second): {@link lookup}
 * checks the database first, bounded so that a flood of bad keys cannot hammer it.
 */
export class KeyRing {
  private byHash = new Map<string, KeyRow>();
  /** Reloads started, and the latest started one whose result is in `byHash`. */
  private started = 0;
  private applied = 0;
  /** Hashes the database did not know, with the time they stop being trusted. Insertion order = age. */
  private readonly unknown = new Map<string, number>();
  /** The read that lookups arriving now wait for (it starts after they arrived). */
  private queued: Promise<void> | undefined;
  /** The lookup read in progress. */
  private current: Promise<void> | undefined;
  private lastReadAt = Number.NEGATIVE_INFINITY;
  private waiting = 0;
  private readonly opts: KeyLookupOptions;
  /** Digests of presented keys that the ring held when presented (see {@link authenticate}). */
  private readonly digests = new Map<string, string>();

  constructor(
    private readonly db: Pick<RegistryStore, "listKeys">,
    private readonly clock: Clock,
    opts: Partial<KeyLookupOptions> = {},
  ) {
    this.opts = { ...KEY_LOOKUP_DEFAULTS, ...opts };
  }

  /**
   * Re-reads the keys from the database. Reloads may overlap (change feed, lookups): the result
   * of one is kept only if no reload started after it has been applied already, so an older
   * read can never bring back a key revoked since.
   */
  async reload(): Promise<void> {
    const gen = ++this.started;
    const rows = await this.db.listKeys();
    if (gen < this.applied) return;
    this.applied = gen;
    this.byHash = new Map(rows.map((r) => [r.hash, r]));
  }

  /**
   * The principal for a presented key, from memory only, or `null` (unknown, revoked or expired:
   * indistinguishable to the caller). This is the whole cost of authentication for a known key.
   */
  authenticate(presented: string): Principal | null {
    // A key presented before and found then skips the SHA-256 (a pure function of the key, so a
    // remembered digest never goes stale; the row is still looked up and checked every time).
    const known = this.digests.get(presented);
    const hash = known ?? hashKey(presented);
    const row = this.byHash.get(hash);
    if (known === undefined) {
      // Compare the digests in constant time; the map lookup only ever sees the digest.
      const a = Buffer.from(hash, "hex");
      const b = Buffer.from(row?.hash ?? "0".repeat(64), "hex");
      const same = crypto.timingSafeEqual(a, b);
      if (!row || !same) return null;
      // Only keys the ring holds are remembered, at most DIGEST_MEMO_MAX: unknown keys cannot grow it.
      if (this.digests.size >= DIGEST_MEMO_MAX) this.digests.clear();
      this.digests.set(presented, hash);
    }
    if (!row) return null;
    if (row.revoked_at !== null) return null;
    if (row.expires_at !== null && row.expires_at <= this.clock.now()) return null;
    return { keyId: row.id, tenant: row.tenant, scopes: row.scopes };
  }

  /**
   * For a key {@link authenticate} refused: checks the database in case the key was created
   * since the ring was loaded. Malformed keys, known keys (revoked, expired) and keys the database did not know
   * within the last `negativeTtlMs` are refused without a read. Otherwise the caller waits for
   * the next read of the keys that starts after it arrived; concurrent lookups share one read,
   * and reads start at most `readsPerSecond` times a second. Throws AppError `unavailable` (503)
   * when more than `maxWaiting` lookups wait already, or the database does not answer. The wait
   * is bounded by the store's own timeout (STORE_TIMEOUT_MS on each read), not by a second one.
   */
  async lookup(presented: string): Promise<Principal | null> {
    const hash = hashKey(presented);
    if (!KEY_FORMAT.test(presented) || this.byHash.has(hash) || this.isKnownUnknown(hash)) return this.authenticate(presented);
    if (this.waiting >= this.opts.maxWaiting) {
      throw new AppError("unavailable", "too many unrecognised API keys are being checked at once; retry shortly", { headers: { "retry-after": "1" } });
    }
    this.waiting++;
    try {
      await this.freshRead();
    } catch (err) {
      throw new AppError("unavailable", "the API key could not be checked: the database is unavailable; try again shortly", { cause: err, headers: { "retry-after": "1" } });
    } finally {
      this.waiting--;
    }
    if (!this.byHash.has(hash)) this.rememberUnknown(hash);
    return this.authenticate(presented);
  }

  private isKnownUnknown(hash: string): boolean {
    const until = this.unknown.get(hash);
    if (until === undefined) return false;
    if (until > this.clock.now()) return true;
    this.unknown.delete(hash);
    return false;
  }

  private rememberUnknown(hash: string): void {
    this.unknown.delete(hash);
    this.unknown.set(hash, this.clock.now() + this.opts.negativeTtlMs);
    while (this.unknown.size > this.opts.negativeMax) {
      const oldest = this.unknown.keys().next().value;
      if (oldest === undefined) break;
      this.unknown.delete(oldest);
    }
  }

  /** A read of every key that starts after this call; callers in the meantime share it. */
  private freshRead(): Promise<void> {
    this.queued ??= this.startRead();
    return this.queued;
  }

  private async startRead(): Promise<void> {
    // Yield first, so that `queued` is set before it is cleared below.
    await null;
    // The read in progress may have started before the caller's key existed: wait for it,
    // then keep to the rate.
    if (this.current) await this.current.catch(() => {});
    const wait = this.lastReadAt + 1000 / this.opts.readsPerSecond - this.clock.now();
    if (wait > 0) await Bun.sleep(wait);
    this.queued = undefined; // lookups arriving from now on wait for the next read
    this.lastReadAt = this.clock.now();
    const read = this.reload();
    this.current = read;
    try {
      await read;
    } finally {
      if (this.current === read) this.current = undefined;
    }
  }
}
