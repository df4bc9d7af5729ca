/**
 * parseFlags (src/cmd/command.ts) reads the usual forms itself, without node:util: the same
 * values as util.parseArgs in strict mode, and whatever parseArgs refuses is still a usage error.
 */
import { expect, test } from "bun:test";
import { parseArgs } from "node:util";
import { parseFlags, UsageError } from "../../src/cmd/command.ts";

const OPTIONS = { port: { type: "string" }, host: { type: "string" }, workers: { type: "string" }, force: { type: "boolean" } } as const;
const reference = (args: string[]) => parseArgs({ args, options: { ...OPTIONS, help: { type: "boolean", short: "h" } }, strict: true });

test("the same values as util.parseArgs", () => {
  const cases = [[], ["--port", "1"], ["--port=1", "--host", "h"], ["--port", "1", "--port", "2"], ["--force"], ["--help"], ["-h"], ["--port="], ["--host", ""], ["--"], ["--port", "8000", "--host", "127.0.0.1", "--workers", "2"]];
  for (const args of cases) expect({ args, got: JSON.stringify(parseFlags(args, OPTIONS)) }).toEqual({ args, got: JSON.stringify(reference(args)) });
});

test("what util.parseArgs refuses is a usage error", () => {
  for (const args of [["--port"], ["--port", "-1"], ["x"], ["--nope"], ["--force=1"], ["-x"]]) {
    expect(() => reference(args)).toThrow();
    expect(() => parseFlags(args, OPTIONS)).toThrow(UsageError);
  }
});
