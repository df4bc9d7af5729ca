/**
 * Every setting the configuration schema reads is documented in the README's settings table
 * (section "Configuration"), and the table names no setting the binary does not read. A new
 * setting fails this test until it is documented.
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ConfigSchema } from "../../src/config.ts";

/** The variable names in the first cell of each row of the tables in README section `## Configuration`. */
function documentedSettings(readme: string): Set<string> {
  const start = readme.indexOf("\n## Configuration\n");
  if (start < 0) throw new Error("README.md has no ## Configuration section");
  const end = readme.indexOf("\n## ", start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  const names = new Set<string>();
  for (const line of section.split("\n")) {
    const cell = /^\|([^|]*)\|/.exec(line)?.[1];
    if (cell === undefined) continue;
    for (const m of cell.matchAll(/`([A-Z][A-Z0-9_]*)`/g)) names.add(m[1] as string);
  }
  return names;
}

test("every setting of ConfigSchema is in the README's settings table, and only those", () => {
  const documented = documentedSettings(readFileSync(join(import.meta.dir, "../../README.md"), "utf8"));
  const read = Object.keys(ConfigSchema.shape);
  expect(read.filter((k) => !documented.has(k))).toEqual([]);
  expect([...documented].filter((k) => !read.includes(k))).toEqual([]);
});
