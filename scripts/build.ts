/**
 * `bun run build`: compiles src/cli.ts into the single executable dist/feature-store
 * (minified, with bytecode for a fast cold start). The executable never auto-loads .env,
 * bunfig.toml, tsconfig.json or package.json from the directory it runs in. Migrations and the
 * /docs assets are embedded through text imports. The bulk lane's worker thread
 * (src/cmd/lane-worker.ts) is a second entrypoint, embedded as /$bunfs/root/cmd/lane-worker.js
 * (see workerUrl() in src/lane/pool.ts); materialize's store thread (src/sources/store-thread.ts)
 * is a third, /$bunfs/root/sources/store-thread.js (threadUrl() in src/sources/store-thread-client.ts). Code splitting (ESM): each command's modules, and each
 * module imported with `import()`, are their own chunks under /$bunfs/root/, loaded when first
 * imported, so a command loads and parses only what it runs (`serve` starts without the
 * PostgreSQL, Kafka or Parquet code, nor its HTTP app until the first request needs it).
 * The fixes of scripts/patch-deps.ts are applied to node_modules first.
 */
import { rmSync } from "node:fs";
import { patchDependencies } from "./patch-deps.ts";

// the Dockerfile installs with --ignore-scripts: the dependency fixes are applied here too
patchDependencies();

const outfile = process.env.OUTFILE ?? "dist/feature-store";
const stale = `${outfile}.tmp`;
rmSync(stale, { force: true });
const args = [
  "build",
  "--compile",
  "--minify",
  "--bytecode",
  "--format=esm",
  "--splitting",
  "--sourcemap=none",
  "--no-compile-autoload-dotenv",
  "--no-compile-autoload-bunfig",
  "--no-compile-autoload-tsconfig",
  "--no-compile-autoload-package-json",
  // msgpackr's optional native addon is not shipped in the binary; skip looking for it at start
  "--define",
  'process.env.MSGPACKR_NATIVE_ACCELERATION_DISABLED="true"',
  "src/cli.ts",
  "src/cmd/lane-worker.ts",
  "src/sources/store-thread.ts",
  "--outfile",
  outfile,
];
const proc = Bun.spawnSync([process.execPath, ...args], { stdout: "inherit", stderr: "inherit" });
if (proc.exitCode !== 0) {
  console.error(`build failed (bun ${args.join(" ")})`);
  process.exit(proc.exitCode ?? 1);
}
