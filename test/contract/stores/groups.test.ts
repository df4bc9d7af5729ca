/**
 * RegistryStore contract for feature views and services (loadGroups, registerCatalog): the same
 * on every backend (see backends.ts).
 */
import { describe, expect, test } from "bun:test";
import type { CatalogPlan, GroupRow, NewGroup } from "../../../src/store/types.ts";
import { databaseFactories } from "./backends.ts";
import { def } from "./support.ts";

const group = (tenant: string, kind: "view" | "service", name: string, extra: Partial<NewGroup> = {}): NewGroup => ({
  tenant, kind, name, version: 1,
  spec: kind === "view" ? { entity_type: "user", join_keys: ["user_id", "org_id"], features: ["f", "g@2"], push_source: "p" } : { features: ["v:*", "f@1"] },
  description: null, owner: null, tags: { team: "ml", "a b": "c\"d" }, created_at: 1_000, updated_at: 1_000, ...extra,
});
const plan = (p: Partial<CatalogPlan>): CatalogPlan => ({ inserts: [], updates: [], groupInserts: [], groupUpdates: [], ...p });

for (const factory of databaseFactories()) {
  describe(`RegistryStore groups on ${factory.name}`, () => {
    test("registerCatalog stores features, views and services in one transaction; JSON round-trips as objects", async () => {
      const { db } = await factory.open();
      const r = await db.registerCatalog("acme", (defs, groups) => ({
        plan: plan({ inserts: [def("acme", "f", 1)], groupInserts: [group("acme", "view", "v"), group("acme", "service", "s")] }),
        apply: true,
        result: [defs.length, groups.length],
      }));
      expect(r.result).toEqual([0, 0]);
      expect(r.inserted.map((d) => d.name)).toEqual(["f"]);
      expect(r.insertedGroups.map((g) => `${g.kind}:${g.name}`)).toEqual(["view:v", "service:s"]);
      const v = r.insertedGroups[0] as GroupRow;
      expect(v.spec).toEqual({ entity_type: "user", join_keys: ["user_id", "org_id"], features: ["f", "g@2"], push_source: "p" });
      expect(v.tags).toEqual({ team: "ml", "a b": 'c"d' });
      await db.registerCatalog("other", () => ({ plan: plan({ groupInserts: [group("other", "view", "v")] }), apply: true, result: null }));

      const seen = await db.registerCatalog("acme", (defs, groups) => ({
        plan: plan({ groupUpdates: [{ id: v.id, description: "d", owner: "o", tags: { k: "v" }, updated_at: 2_000 }] }),
        apply: true,
        result: [defs.map((d) => d.name), groups.map((g) => g.name)],
      }));
      expect(seen.result).toEqual([["f"], ["v", "s"]]);
      const acme = await db.loadGroups("acme");
      expect(acme.map((g) => g.name)).toEqual(["v", "s"]);
      expect(acme[0]).toMatchObject({ description: "d", owner: "o", tags: { k: "v" }, updated_at: 2_000, spec: v.spec });
      expect((await db.loadGroups()).map((g) => `${g.tenant}/${g.name}`)).toEqual(["acme/v", "acme/s", "other/v"]);
      expect(await db.loadGroups("nobody")).toEqual([]);
    });

    test("apply=false changes nothing; a duplicate view rolls back the features registered with it", async () => {
      const { db } = await factory.open();
      const dry = await db.registerCatalog("t", () => ({ plan: plan({ groupInserts: [group("t", "view", "v")] }), apply: false, result: "dry" }));
      expect(dry).toEqual({ result: "dry", inserted: [], insertedGroups: [] });
      await db.registerCatalog("t", () => ({ plan: plan({ groupInserts: [group("t", "view", "v")] }), apply: true, result: null }));
      await expect(
        db.registerCatalog("t", () => ({ plan: plan({ inserts: [def("t", "f", 1)], groupInserts: [group("t", "view", "v")] }), apply: true, result: null })),
      ).rejects.toThrow();
      expect(await db.loadDefinitions("t")).toEqual([]);
      expect((await db.loadGroups("t")).length).toBe(1);
    });
  });
}
