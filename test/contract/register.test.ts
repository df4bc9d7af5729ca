/** Contract suite (../shared/API.md), POST /api/v1/features/register and the definitions it creates; on every backend (see ./support.ts). */
import { describe, expect, test } from "bun:test";
import { contractOn, expectProblem, R } from "./support.ts";

contractOn(({ s, setup }) => {
  describe("register", () => {
    test("201 new, 200 identical with metadata replaced, 409 on changed dtype/ttl/entity type", async () => {
      const { key } = await setup();
      const body = { name: "user_lifetime_value", version: 1, dtype: "float64", entity_type: "user", ttl_hours: 24, description: "d1", owner: "o", tags: { a: "1" } };
      const r1 = await s.post(R, body, key);
      expect(r1.status).toBe(201);
      expect(r1.body.feature).toMatchObject({ ...body });
      expect(r1.body.feature.created_at).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
      const r2 = await s.post(R, { ...body, description: "d2", tags: undefined, owner: undefined }, key);
      expect(r2.status).toBe(200);
      expect(r2.body.feature.description).toBe("d2");
      expect(r2.body.feature.owner).toBeNull();
      expect(r2.body.feature.tags).toEqual({});
      expect(r2.body.feature.created_at).toBe(r1.body.feature.created_at);
      expectProblem(await s.post(R, { ...body, dtype: "float32" }, key), 409, "conflict");
      expectProblem(await s.post(R, { ...body, ttl_hours: 48 }, key), 409, "conflict");
      const { ttl_hours: _ttl, ...noTtl } = body;
      expectProblem(await s.post(R, noTtl, key), 409, "conflict");
      expectProblem(await s.post(R, { ...body, entity_type: "item" }, key), 409, "conflict");
      // a new version may change dtype, not entity type
      expect((await s.post(R, { ...body, version: 2, dtype: "float32" }, key)).status).toBe(201);
      expectProblem(await s.post(R, { ...body, version: 3, entity_type: "item" }, key), 409, "conflict");
    });

    test("invalid bodies are 400 with errors", async () => {
      const { key } = await setup();
      const ok = { name: "x", version: 1, dtype: "int32", entity_type: "user" };
      for (const [bad, path] of [
        [{ ...ok, name: "Bad Name" }, "name"],
        [{ ...ok, name: "a".repeat(129) }, "name"],
        [{ ...ok, version: 0 }, "version"],
        [{ ...ok, version: 1.5 }, "version"],
        [{ ...ok, version: "1" }, "version"],
        [{ ...ok, dtype: "decimal" }, "dtype"],
        [{ ...ok, dtype: "int32[][]" }, "dtype"],
        [{ ...ok, entity_type: "User" }, "entity_type"],
        [{ ...ok, ttl_hours: 0 }, "ttl_hours"],
        [{ ...ok, ttl_hours: -1 }, "ttl_hours"],
        [{ ...ok, tags: { a: 1 } }, "tags.a"],
        [{ ...ok, extra: true }, "extra"],
        [{ version: 1, dtype: "int32", entity_type: "user" }, "name"],
      ] as [Record<string, unknown>, string][]) {
        const r = await s.post(R, bad, key);
        expectProblem(r, 400, "invalid_request");
        expect(r.body.errors.map((e: { path: string }) => e.path)).toContain(path);
      }
    });

    test("list shows the latest version of each, filtered by entity type; get shows all versions", async () => {
      const { key } = await setup([
        { name: "b_feat", dtype: "int32" },
        { name: "a_feat", dtype: "string", entity_type: "item" },
      ]);
      await s.post(R, { name: "b_feat", version: 2, dtype: "int64", entity_type: "user" }, key);
      const all = await s.get("/api/v1/features", key);
      expect(all.body.features.map((f: { name: string; version: number }) => `${f.name}@${f.version}`)).toEqual(["a_feat@1", "b_feat@2"]);
      const users = await s.get("/api/v1/features?entity_type=user", key);
      expect(users.body.features.map((f: { name: string }) => f.name)).toEqual(["b_feat"]);
      const one = await s.get("/api/v1/features/b_feat", key);
      expect(one.body.name).toBe("b_feat");
      expect(one.body.versions.map((v: { version: number; dtype: string }) => `${v.version}:${v.dtype}`)).toEqual(["1:int32", "2:int64"]);
      expectProblem(await s.get("/api/v1/features/nope", key), 404, "not_found");
      expectProblem(await s.get("/api/v1/features?entity_type=Bad!", key), 400, "invalid_request");
    });
  });
});
