/**
 * API keys: generation (only the SHA-256 is stored), scopes, and the in-memory key ring that
 * authenticates requests without a query (reloaded when the change feed reports key changes).
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { Clock } from "../lib/time.ts";
import type { KeyRow, RegistryStore } from "../store/types.ts";

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
  return createHash("sha256").update(key).digest("hex");
}

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

/** Active keys by hash, in memory. */
export class KeyRing {
  private byHash = new Map<string, KeyRow>();

  constructor(
    private readonly db: Pick<RegistryStore, "listKeys">,
    private readonly clock: Clock,
  ) {}

  /** Re-reads the keys from the database. */
  async reload(): Promise<void> {
    const rows = await this.db.listKeys();
    this.byHash = new Map(rows.filter((r) => r.revoked_at === null).map((r) => [r.hash, r]));
  }

  /** The principal for a presented key, or `null` (unknown, revoked or expired: indistinguishable). */
  authenticate(presented: string): Principal | null {
    const hash = hashKey(presented);
    const row = this.byHash.get(hash);
    // Compare the digests in constant time; the map lookup only ever sees the digest.
    const a = Buffer.from(hash, "hex");
    const b = Buffer.from(row?.hash ?? "0".repeat(64), "hex");
    const same = timingSafeEqual(a, b);
    if (!row || !same) return null;
    if (row.expires_at !== null && row.expires_at <= this.clock.now()) return null;
    return { keyId: row.id, tenant: row.tenant, scopes: row.scopes };
  }
}
