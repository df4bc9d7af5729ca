/**
 * Preload (`bun --preload test/support/loaded-modules.ts src/cli.ts ...`): when the process
 * exits, writes the path of every module it loaded (ESM and CommonJS: Bun lists both in
 * require.cache), one a line, to the file named by LOADED_MODULES_OUT.
 */
import { writeFileSync } from "node:fs";

const out = process.env.LOADED_MODULES_OUT;
if (out) process.on("exit", () => writeFileSync(out, `${Object.keys(require.cache).join("\n")}\n`));
