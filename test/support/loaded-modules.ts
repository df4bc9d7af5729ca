/**
 * Preload (`bun --preload test/support/loaded-modules.ts src/cli.ts ...`): when the process
 * exits, writes the path of every module it loaded (ESM and CommonJS: Bun lists both in
 * require.cache), one a line, to the file named by LOADED_MODULES_OUT; on SIGUSR2, the modules
 * loaded so far to LOADED_MODULES_OUT + ".now".
 */
import { renameSync, writeFileSync } from "node:fs";

const out = process.env.LOADED_MODULES_OUT;
const list = (): string => `${Object.keys(require.cache).join("\n")}\n`;
if (out) {
  process.on("exit", () => writeFileSync(out, list()));
  process.on("SIGUSR2", () => {
    writeFileSync(`${out}.tmp`, list());
    renameSync(`${out}.tmp`, `${out}.now`);
  });
}
