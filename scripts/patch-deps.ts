/**
 * `bun scripts/patch-deps.ts`: fixes in pinned dependencies that upstream has not released,
 * applied to node_modules in place. Idempotent. Runs after `npm install` / `npm ci` (the
 * package's `postinstall`), before every build (scripts/build.ts: the Dockerfile installs with
 * `--ignore-scripts`) and before every test run (scripts/test.ts), so the sources the tests load
 * and the ones compiled into the binary are the same.
 *
 * Each fix names the exact version it is for and a text that must occur exactly once in each
 * file: another version, or a file that changed, stops the install, build or test run with an
 * error naming the fix, so that a dependency bump revisits it (and drops it once upstream
 * ships the fix).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");

/** One fix: `find` replaced by `replace` in each of `files` of `pkg` at exactly `version`. */
interface Fix {
  pkg: string;
  version: string;
  files: string[];
  find: string;
  replace: string;
  /** why, and where upstream tracks it */
  why: string;
}

export const FIXES: readonly Fix[] = [
  {
    pkg: "postgres",
    version: "3.4.9",
    // the ESM build (Bun and the binary load it), the CommonJS and the Cloudflare ones
    files: ["src/connection.js", "cjs/src/connection.js", "cf/src/connection.js"],
    find: "    query = results = errorResponse = null\n    result = new Result()\n",
    replace: "    query = results = errorResponse = null\n    result = new Result()\n    rows = 0 // feature-store: scripts/patch-deps.ts (porsager/postgres#1119)\n",
    why:
      "a query that fails after some of its rows arrived (a statement timeout, a cancel, an error in a row) leaves the " +
      "connection's row counter where it stopped (only CommandComplete resets it): the next query on that connection " +
      "resolves with that many holes before its rows (porsager/postgres#1119, #1181; PRs #1120, #1190 unreleased). " +
      "A result now always starts at row 0 once the previous query is over (ReadyForQuery).",
  },
  {
    pkg: "postgres",
    version: "3.4.9",
    files: ["src/connection.js", "cjs/src/connection.js", "cf/src/connection.js"],
    find: "      initial && !initial.reserve && execute(initial)\n",
    replace:
      "      initial && initial.cancelled && !initial.reserve && (initial = null, onopen(connection)) // feature-store: scripts/patch-deps.ts (a cancelled first query)\n" +
      "      initial && !initial.reserve && execute(initial)\n",
    why:
      "a query cancelled (our call timeout) while the new connection it opened is still starting is skipped when the " +
      "connection is ready, and the connection is never handed back to the pool: it stays `connecting`, serving nothing, " +
      "until its max_lifetime (30-60 min; for a dedicated client, such as the change feed's LISTEN connection, until the " +
      "server drops it). Now a connection whose first query was cancelled goes to the pool as an open one. Found in " +
      "review (session 10), reproduced with a proxy that delays the connection's start.",
  },
];

/** Applies every fix under `root`'s node_modules; returns what changed. Throws when a fix does not apply. */
export function patchDependencies(root = ROOT): string[] {
  const changed: string[] = [];
  for (const fix of FIXES) {
    const dir = join(root, "node_modules", fix.pkg);
    const version = (JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { version: string }).version;
    if (version !== fix.version) {
      throw new Error(`scripts/patch-deps.ts: ${fix.pkg} is ${version}, the fix is for ${fix.version}: check whether ${version} still needs it (${fix.why})`);
    }
    for (const file of fix.files) {
      const path = join(dir, file);
      const text = readFileSync(path, "utf8");
      if (occurrences(text, fix.replace) === 1 && occurrences(text, fix.find) === 1) continue;
      if (occurrences(text, fix.find) !== 1) throw new Error(`scripts/patch-deps.ts: ${fix.pkg}/${file} does not hold the text the fix replaces exactly once`);
      writeFileSync(path, text.replace(fix.find, fix.replace));
      changed.push(`${fix.pkg}/${file}`);
    }
  }
  return changed;
}

function occurrences(text: string, part: string): number {
  let n = 0;
  for (let at = text.indexOf(part); at >= 0; at = text.indexOf(part, at + part.length)) n++;
  return n;
}

if (import.meta.main) {
  const changed = patchDependencies();
  if (changed.length > 0) console.log(`patched ${changed.join(", ")}`);
}
