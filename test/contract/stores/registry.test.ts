/**
 * RegistryStore contract: definitions, API keys, the change feed and migrations behave the same
 * on every backend (see backends.ts). Moved here from the PostgreSQL integration suite.
 */
import { describe, expect, test } from "bun:test";
import type { ChangeSet, Database, DefinitionRow } from "../../../src/store/types.ts";
import { databaseFactories, waitFor } from "./backends.ts";
import { def, val } from "./support.ts";

for (const factory of databaseFactories()) {
  describe(`RegistryStore on ${factory.name}`, () => {
    test("migrate is idempotent; assertMigrated passes after it", async () => {
      const { db } = await factory.open();
      expect(await db.migrate()).toEqual([]);
      await db.assertMigrated();
      await db.ping();
    });

    test("registerDefinitions inserts (returning rows in plan order), updates metadata, and reads the tenant's current rows", async () => {
      const { db } = await factory.open();
      const first = await db.registerDefinitions("acme", (current) => ({
        plan: { inserts: [def("acme", "b_feature", 1, { tags: { team: "x" }, ttl_hours: 1.5 }), def("acme", "a_feature", 1, { dtype: "float32[]" })], updates: [] },
        apply: true,
        result: current.length,
      }));
      expect(first.result).toBe(0);
      expect(first.inserted.map((d) => d.name)).toEqual(["b_feature", "a_feature"]);
      const b = first.inserted[0] as DefinitionRow;
      expect(b).toMatchObject({ tenant: "acme", version: 1, dtype: "int64", ttl_hours: 1.5, tags: { team: "x" }, created_at: 1_000 });
      expect(typeof b.id).toBe("number");

      // another tenant's rows are not part of `current`
      await db.registerDefinitions("other", () => ({ plan: { inserts: [def("other", "b_feature", 1)], updates: [] }, apply: true, result: null }));

      const second = await db.registerDefinitions("acme", (current) => ({
        plan: { inserts: [], updates: [{ id: b.id, description: "desc", owner: "me", tags: { k: "v" }, updated_at: 2_000 }] },
        apply: true,
        result: current.map((d) => d.name),
      }));
      expect(second.result).toEqual(["b_feature", "a_feature"]);
      expect(second.inserted).toEqual([]);
      const all = await db.loadDefinitions();
      expect(all.map((d) => `${d.tenant}/${d.name}`)).toEqual(["acme/b_feature", "acme/a_feature", "other/b_feature"]);
      expect((await db.loadDefinitions("other")).map((d) => `${d.tenant}/${d.name}`)).toEqual(["other/b_feature"]);
      expect(await db.loadDefinitions("nobody")).toEqual([]);
      expect(all[0]).toMatchObject({ description: "desc", owner: "me", tags: { k: "v" }, created_at: 1_000, updated_at: 2_000 });
    });

    test("apply=false and a throwing decide change nothing; a failing insert rolls back the whole plan", async () => {
      const { db } = await factory.open();
      const dry = await db.registerDefinitions("t", () => ({ plan: { inserts: [def("t", "f", 1)], updates: [] }, apply: false, result: "dry" }));
      expect(dry).toEqual({ result: "dry", inserted: [] });
      await expect(
        db.registerDefinitions("t", () => {
          throw new Error("nope");
        }),
      ).rejects.toThrow("nope");
      await db.registerDefinitions("t", () => ({ plan: { inserts: [def("t", "f", 1)], updates: [] }, apply: true, result: null }));
      await expect(
        db.registerDefinitions("t", () => ({ plan: { inserts: [def("t", "g", 1), def("t", "f", 1)], updates: [] }, apply: true, result: null })),
      ).rejects.toThrow();
      expect((await db.loadDefinitions()).map((d) => d.name)).toEqual(["f"]);
    });

    test("registrations of one tenant are serialised across instances: concurrent decides see each other's inserts", async () => {
      const { db, another } = await factory.open();
      const other = await another();
      const register = (d: Database) =>
        d.registerDefinitions("t", (current) => {
          const exists = current.some((c) => c.name === "f");
          return { plan: { inserts: exists ? [] : [def("t", "f", 1)], updates: [] }, apply: true, result: exists };
        });
      const results = await Promise.all([register(db), register(other), register(db), register(other)]);
      expect(results.filter((r) => !r.result)).toHaveLength(1);
      expect(await db.loadDefinitions()).toHaveLength(1);
    });

    test("keys: create, list newest first (per tenant or all), a duplicate hash refused, revoke once", async () => {
      const { db } = await factory.open();
      const key = (id: string, tenant: string, created_at: number) => ({
        id,
        tenant,
        scopes: ["read", "write"],
        hash: `hash-${id}`,
        prefix: `fs_${id}`,
        created_at,
        expires_at: id === "k2" ? 9_999 : null,
        revoked_at: null,
      });
      await db.createKey(key("k1", "a", 1_000));
      await db.createKey(key("k2", "a", 2_000));
      await db.createKey(key("k3", "b", 1_500));
      expect((await db.listKeys()).map((k) => k.id)).toEqual(["k2", "k3", "k1"]);
      expect(await db.listKeys("a")).toEqual([key("k2", "a", 2_000), key("k1", "a", 1_000)]);
      await expect(db.createKey({ ...key("k4", "a", 3_000), hash: "hash-k1" })).rejects.toThrow();
      expect(await db.revokeKey("k1", 5_000)).toBe(true);
      expect(await db.revokeKey("k1", 6_000)).toBe(false);
      expect(await db.revokeKey("nope", 6_000)).toBe(false);
      expect((await db.listKeys("a")).find((k) => k.id === "k1")?.revoked_at).toBe(5_000);
    });

    test("the change feed: another instance's registrations, keys and values reach watch()", async () => {
      const { db: server, another } = await factory.open();
      const other = await another();
      const seen: ChangeSet[] = [];
      server.watch((c) => seen.push(c));
      await Bun.sleep(300); // the feed is established (LISTEN, first poll)
      const saw = (kind: keyof ChangeSet) => () => seen.some((c) => c[kind]);
      await other.registerDefinitions("t", () => ({ plan: { inserts: [def("t", "f", 1)], updates: [] }, apply: true, result: null }));
      await waitFor("definitions change", saw("definitions"));
      // a feed that names tenants names the one that changed
      for (const c of seen.filter((x) => x.definitions && x.tenants)) expect(c.tenants).toEqual(["t"]);
      await other.createKey({ id: "k", tenant: "t", scopes: ["read"], hash: "h", prefix: "p", created_at: 1, expires_at: null, revoked_at: null });
      await waitFor("keys change", saw("keys"));
      await other.writeValues([val(1, "e", Date.now(), "v")]);
      await waitFor("values change", saw("values"));
    });

    test("an instance's own changes are not reported to itself", async () => {
      const { db } = await factory.open();
      const seen: ChangeSet[] = [];
      db.watch((c) => seen.push(c));
      await Bun.sleep(300);
      await db.writeValues([val(1, "e", Date.now(), "mine")]);
      await db.createKey({ id: "k", tenant: "t", scopes: ["read"], hash: "h", prefix: "p", created_at: 1, expires_at: null, revoked_at: null });
      await Bun.sleep(1_500);
      expect(seen).toEqual([]);
    });
  });
}
