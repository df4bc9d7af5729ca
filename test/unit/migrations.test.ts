/** pendingMigrations: what is left to apply, and refusals for a changed or unknown applied migration. */
import { describe, expect, test } from "bun:test";
import { migrationChecksum, pendingMigrations } from "../../src/store/migrations.ts";

const m = (name: string, sql: string) => ({ name, sql });
const all = [m("0001_init", "CREATE TABLE a (x int);"), m("0002_more", "CREATE TABLE b (y int);"), m("0003_last", "CREATE INDEX c ON b (y);")];
const applied = (...ms: { name: string; sql: string }[]) => ms.map((x) => ({ name: x.name, checksum: migrationChecksum(x) }));

describe("pendingMigrations", () => {
  test("everything is pending on an empty database, in order", () => {
    expect(pendingMigrations(all, []).map((x) => x.name)).toEqual(["0001_init", "0002_more", "0003_last"]);
  });

  test("applied ones are skipped; nothing is left once all are applied", () => {
    expect(pendingMigrations(all, applied(all[0]!, all[1]!)).map((x) => x.name)).toEqual(["0003_last"]);
    expect(pendingMigrations(all, applied(...all))).toEqual([]);
  });

  test("an applied migration whose text changed is refused", () => {
    expect(() => pendingMigrations(all, applied(m("0001_init", "CREATE TABLE a (x bigint);")))).toThrow(/0001_init was changed after it was applied \(checksum mismatch\)/);
  });

  test("an applied migration this binary does not know is refused", () => {
    expect(() => pendingMigrations(all, applied(...all, m("0004_future", "")))).toThrow(/0004_future, which this binary does not know/);
  });
});
