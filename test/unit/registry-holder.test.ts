/** RegistryHolder: a tenant reload replaces only that tenant; reloads apply in the order they started. */
import { describe, expect, test } from "bun:test";
import { RegistryHolder } from "../../src/serving/deps.ts";
import type { DefinitionRow } from "../../src/store/types.ts";

const row = (id: number, tenant: string, name: string): DefinitionRow => ({
  id, tenant, name, version: 1, dtype: "int64", entity_type: "user", ttl_hours: null, description: null, owner: null, tags: {}, created_at: 0, updated_at: 0,
});

/** A registry store whose rows the test changes, with a gate to hold a read. */
function store(rows: DefinitionRow[]) {
  const calls: (string | undefined)[] = [];
  let gate: Promise<void> | undefined;
  return {
    rows,
    calls,
    hold(): () => void {
      let open!: () => void;
      gate = new Promise((r) => (open = r));
      return open;
    },
    async loadGroups() {
      return [];
    },
    async loadDefinitions(tenant?: string) {
      calls.push(tenant);
      const snapshot = this.rows.filter((r) => tenant === undefined || r.tenant === tenant);
      const g = gate;
      gate = undefined;
      if (g) await g;
      return snapshot;
    },
  };
}

describe("RegistryHolder", () => {
  test("reload(tenant) reads and replaces only that tenant", async () => {
    const s = store([row(1, "a", "f"), row(2, "b", "g")]);
    const h = new RegistryHolder(s);
    await h.reload();
    s.rows = [row(1, "a", "f"), row(3, "a", "f2"), row(2, "b", "g"), row(4, "b", "g2")];
    await h.reload("a");
    expect(s.calls).toEqual([undefined, "a"]);
    expect(h.current.latest("a").map((d) => d.name)).toEqual(["f", "f2"]);
    expect(h.current.latest("b").map((d) => d.name)).toEqual(["g"]); // not re-read
    s.rows = [row(2, "b", "g")];
    await h.reloadFor(["a"]);
    expect(h.current.latest("a")).toEqual([]);
    await h.reloadFor(undefined);
    expect(s.calls).toEqual([undefined, "a", "a", undefined]);
  });

  test("a slow reload that started first never overwrites a later one", async () => {
    const s = store([row(1, "a", "old")]);
    const h = new RegistryHolder(s);
    const open = s.hold();
    const full = h.reload(); // reads "old", then waits
    s.rows = [row(1, "a", "old"), row(2, "a", "new")];
    const tenant = h.reload("a"); // queued behind the full reload
    open();
    await Promise.all([full, tenant]);
    expect(h.current.latest("a").map((d) => d.name)).toEqual(["new", "old"]);
  });
});
