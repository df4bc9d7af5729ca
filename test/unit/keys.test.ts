import { describe, expect, test } from "bun:test";
import { AppError } from "../../src/errors.ts";
import { generateKey, hasScope, hashKey, KeyRing, type Scope } from "../../src/serving/keys.ts";
import type { KeyRow } from "../../src/store/types.ts";

describe("API keys", () => {
  test("only the hash is stored; the key is long and random", () => {
    const a = generateKey("t", ["read"], 0, null);
    const b = generateKey("t", ["read"], 0, null);
    expect(a.key).not.toBe(b.key);
    expect(a.key).toMatch(/^fs_[A-Za-z0-9_-]{43}$/);
    expect(a.row.hash).toBe(hashKey(a.key));
    expect(JSON.stringify(a.row)).not.toContain(a.key);
    expect(a.row.prefix).toBe(a.key.slice(0, 7));
  });

  test("scopes nest: admin > write > read", () => {
    expect(hasScope(["admin"], "read")).toBe(true);
    expect(hasScope(["admin"], "write")).toBe(true);
    expect(hasScope(["write"], "admin")).toBe(false);
    expect(hasScope(["read"], "write")).toBe(false);
    expect(hasScope([], "read")).toBe(false);
  });
});

/** The key table of a database, in memory: counts reads, and can hold a read until released. */
class KeyTable {
  rows: KeyRow[] = [];
  reads = 0;
  failing = false;
  private gate: Promise<void> | undefined;
  private open: (() => void) | undefined;

  /** Holds every read started from now on until `release()`. */
  hold(): void {
    this.gate = new Promise((r) => {
      this.open = r;
    });
  }
  release(): void {
    this.open?.();
    this.gate = undefined;
  }
  async listKeys(): Promise<KeyRow[]> {
    this.reads++;
    const snapshot = this.rows.map((r) => ({ ...r }));
    if (this.failing) throw new Error("connection refused");
    if (this.gate) await this.gate;
    return snapshot;
  }
  add(tenant = "t", scopes: Scope[] = ["read"]): { key: string; row: KeyRow } {
    const k = generateKey(tenant, scopes, 0, null);
    this.rows.push(k.row);
    return k;
  }
}

/** A well-formed key that was never stored. */
const stranger = () => generateKey("nobody", ["read"], 0, null).key;

describe("KeyRing: keys created by another process", () => {
  const clock = { t: 1_000_000, now() { return this.t; } };

  test("a key created after the last reload is found in the database at once; known keys never read it", async () => {
    const db = new KeyTable();
    const old = db.add();
    const ring = new KeyRing(db, clock);
    await ring.reload();
    const fresh = db.add("acme", ["write"]);
    expect(ring.authenticate(fresh.key)).toBeNull(); // not in memory yet
    const reads = db.reads;
    expect(await ring.lookup(fresh.key)).toEqual({ keyId: fresh.row.id, tenant: "acme", scopes: ["write"] });
    expect(db.reads).toBe(reads + 1);
    // from now on both are memory hits
    expect(ring.authenticate(fresh.key)?.tenant).toBe("acme");
    expect(ring.authenticate(old.key)?.tenant).toBe("t");
    expect(db.reads).toBe(reads + 1);
  });

  test("a flood of unknown keys shares reads, at most readsPerSecond; a repeated one is refused from memory", async () => {
    const db = new KeyTable();
    const ring = new KeyRing(db, clock, { readsPerSecond: 10 });
    await ring.reload();
    db.reads = 0;
    const bad = Array.from({ length: 200 }, stranger);
    const answers = await Promise.all(bad.map((k) => ring.lookup(k)));
    expect(answers.every((a) => a === null)).toBe(true);
    expect(db.reads).toBe(1); // all 200 arrived before the first read started
    // the same bad keys again, within the negative TTL: no read at all
    const again = await Promise.all(bad.map((k) => ring.lookup(k)));
    expect(again.every((a) => a === null)).toBe(true);
    expect(db.reads).toBe(1);
    // after the TTL the database is asked again (once for all of them)
    clock.t += 5001;
    await Promise.all(bad.map((k) => ring.lookup(k)));
    expect(db.reads).toBe(2);
  });

  test("a lookup arriving during a read waits for a read that starts after it (the key may be newer than the read in progress)", async () => {
    const db = new KeyTable();
    const ring = new KeyRing(db, clock, { readsPerSecond: 1000 });
    await ring.reload();
    db.hold();
    const first = ring.lookup(stranger());
    await Bun.sleep(5); // that read is now in progress, held
    const fresh = db.add("acme");
    const second = ring.lookup(fresh.key);
    db.release();
    expect(await first).toBeNull();
    expect((await second)?.tenant).toBe("acme");
  });

  test("revoked and expired keys are refused without a read; a slow read never brings back a revoked key", async () => {
    const db = new KeyTable();
    const k = db.add("acme");
    const ring = new KeyRing(db, clock, { readsPerSecond: 1000 });
    await ring.reload();
    expect(ring.authenticate(k.key)?.tenant).toBe("acme");
    // a lookup read starts (before the revocation) and is slow...
    db.hold();
    const slow = ring.lookup(stranger());
    await Bun.sleep(5);
    // ...the key is revoked, and the change feed's reload (started later) lands first
    db.release();
    db.rows[0] = { ...k.row, revoked_at: clock.t };
    await ring.reload();
    await slow;
    expect(ring.authenticate(k.key)).toBeNull();
    const reads = db.reads;
    expect(await ring.lookup(k.key)).toBeNull();
    expect(db.reads).toBe(reads); // known (revoked): no read
  });

  test("reloads that overlap keep the newest start, whatever order they finish in", async () => {
    const db = new KeyTable();
    const k = db.add("acme");
    const ring = new KeyRing(db, clock);
    db.hold();
    const older = ring.reload(); // reads the key as active, held
    await Bun.sleep(1);
    db.release();
    db.rows[0] = { ...k.row, revoked_at: clock.t };
    await ring.reload(); // started later, sees the revocation, finishes first
    await older;
    expect(ring.authenticate(k.key)).toBeNull();
  });

  test("a database that does not answer: 503 unavailable (never a 401 for a key that may be valid), and nothing remembered", async () => {
    const db = new KeyTable();
    const ring = new KeyRing(db, clock, { readsPerSecond: 1000 });
    await ring.reload();
    db.failing = true;
    const fresh = db.add("acme");
    const err = await ring.lookup(fresh.key).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).code).toBe("unavailable");
    db.failing = false;
    await Bun.sleep(2);
    expect((await ring.lookup(fresh.key))?.tenant).toBe("acme");
  });

  test("a read is bounded by the store's own timeout only: a read slower than any ring-level bound still answers", async () => {
    const db = new KeyTable();
    const ring = new KeyRing(db, clock, { readsPerSecond: 1000 });
    await ring.reload();
    db.hold();
    const fresh = db.add("acme");
    const pending = ring.lookup(fresh.key);
    // The ring once raced each read against its own 2 s timer on top of STORE_TIMEOUT_MS.
    await Bun.sleep(2_100);
    db.release();
    expect((await pending)?.tenant).toBe("acme");
  });

  test("over maxWaiting lookups: 503 with Retry-After, the waiting ones still answered", async () => {
    const db = new KeyTable();
    const ring = new KeyRing(db, clock, { readsPerSecond: 1000, maxWaiting: 3 });
    await ring.reload();
    db.hold();
    const waiting = [1, 2, 3].map(() => ring.lookup(stranger()));
    const over = await ring.lookup(stranger()).catch((e: unknown) => e);
    expect((over as AppError).code).toBe("unavailable");
    expect((over as AppError).headers?.["retry-after"]).toBe("1");
    db.release();
    expect(await Promise.all(waiting)).toEqual([null, null, null]);
  });

  test("a key that is not of the issued shape is refused without a read", async () => {
    const db = new KeyTable();
    const ring = new KeyRing(db, clock, { readsPerSecond: 1000 });
    await ring.reload();
    for (const k of ["hello", "fs_", `${stranger()}x`, "x".repeat(16_000)]) expect(await ring.lookup(k)).toBeNull();
    expect(db.reads).toBe(1);
  });

  test("the negative cache is bounded (oldest forgotten first)", async () => {
    const db = new KeyTable();
    const ring = new KeyRing(db, clock, { readsPerSecond: 1000, negativeMax: 2 });
    await ring.reload();
    const [a, b, c] = [stranger(), stranger(), stranger()];
    for (const k of [a, b, c]) await ring.lookup(k);
    const reads = db.reads;
    await ring.lookup(c); // remembered
    expect(db.reads).toBe(reads);
    await ring.lookup(a); // forgotten: read again
    expect(db.reads).toBe(reads + 1);
  });
});

describe("KeyRing: remembered digests", () => {
  const clock = { t: 1_000_000, now() { return this.t; } };

  test("a key presented before is still checked every time: revoked, expired or gone after a reload, it is refused", async () => {
    const db = new KeyTable();
    const a = db.add("t", ["read"]);
    const b = db.add("t", ["write"]);
    const ring = new KeyRing(db, clock);
    await ring.reload();
    expect(ring.authenticate(a.key)?.keyId).toBe(a.row.id);
    expect(ring.authenticate(a.key)?.keyId).toBe(a.row.id); // the remembered digest
    expect(ring.authenticate(b.key)?.scopes).toEqual(["write"]);
    (db.rows.find((r) => r.id === a.row.id) as KeyRow).revoked_at = clock.t;
    (db.rows.find((r) => r.id === b.row.id) as KeyRow).expires_at = clock.t + 10;
    await ring.reload();
    expect(ring.authenticate(a.key)).toBeNull();
    expect(ring.authenticate(b.key)?.keyId).toBe(b.row.id);
    clock.t += 10;
    expect(ring.authenticate(b.key)).toBeNull();
    db.rows.length = 0;
    await ring.reload();
    expect(ring.authenticate(b.key)).toBeNull();
    // a key that differs in one character never matches a remembered one
    expect(ring.authenticate(`${a.key.slice(0, -1)}${a.key.endsWith("A") ? "B" : "A"}`)).toBeNull();
  });
});
