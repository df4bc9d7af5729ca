/**
 * `bun scripts/import-graph.ts`: checks that dependencies in src/ point one way. Every module
 * belongs to a layer (below, lowest first); a module may import its own layer or a lower one,
 * never a higher one, and the graph of modules has no cycle (type-only imports count: they are
 * dependencies of the design even when erased at run time). Prints every violation and exits 1
 * when there is one; otherwise prints the counts.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");
const SRC = join(ROOT, "src");

/** Layers, lowest first: a path prefix (relative to src/) per layer. */
const LAYERS: { name: string; prefixes: string[] }[] = [
  { name: "lib", prefixes: ["lib/", "types.d.ts"] },
  { name: "base", prefixes: ["errors.ts", "log.ts", "metrics.ts", "config.ts", "settings.ts"] },
  { name: "registry", prefixes: ["registry/"] },
  { name: "schemas", prefixes: ["schemas.ts", "catalog-schemas.ts"] },
  { name: "formats", prefixes: ["formats/"] },
  { name: "store", prefixes: ["store/", "stores.ts"] },
  { name: "serving", prefixes: ["serving/"] },
  { name: "sources", prefixes: ["sources/"] },
  { name: "stream", prefixes: ["stream/"] },
  { name: "lane", prefixes: ["lane/"] },
  { name: "api", prefixes: ["api/"] },
  { name: "app", prefixes: ["app.ts"] },
  { name: "cmd", prefixes: ["cmd/"] },
  { name: "cli", prefixes: ["cli.ts"] },
];

function layerOf(file: string): number {
  const rel = relative(SRC, file);
  const i = LAYERS.findIndex((l) => l.prefixes.some((p) => rel === p || rel.startsWith(p)));
  if (i < 0) throw new Error(`${rel} belongs to no layer; add it to LAYERS in scripts/import-graph.ts`);
  return i;
}

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : p.endsWith(".ts") ? [p] : [];
  });
}

const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+"([^"]+)"|import\(\s*"([^"]+)"\s*\)/g;

const graph = new Map<string, string[]>();
for (const f of files(SRC)) {
  const text = readFileSync(f, "utf8");
  const deps: string[] = [];
  for (const m of text.matchAll(IMPORT)) {
    const spec = m[1] ?? m[2];
    if (!spec?.startsWith(".")) continue;
    const target = resolve(dirname(f), spec);
    if (target.startsWith(SRC)) deps.push(target);
  }
  graph.set(f, deps);
}

const problems: string[] = [];
let edges = 0;
for (const [f, deps] of graph) {
  for (const d of deps) {
    edges++;
    if (layerOf(d) > layerOf(f)) problems.push(`upward import: ${relative(SRC, f)} (${LAYERS[layerOf(f)]?.name}) -> ${relative(SRC, d)} (${LAYERS[layerOf(d)]?.name})`);
  }
}

// cycles: depth-first search, reporting each cycle once by its smallest member
const state = new Map<string, "open" | "done">();
const stack: string[] = [];
const seen = new Set<string>();
function visit(f: string): void {
  state.set(f, "open");
  stack.push(f);
  for (const d of graph.get(f) ?? []) {
    if (state.get(d) === "open") {
      const cycle = stack.slice(stack.indexOf(d)).map((x) => relative(SRC, x));
      const key = [...cycle].sort().join(" ");
      if (!seen.has(key)) {
        seen.add(key);
        problems.push(`cycle: ${[...cycle, relative(SRC, d)].join(" -> ")}`);
      }
    } else if (!state.has(d)) visit(d);
  }
  stack.pop();
  state.set(f, "done");
}
for (const f of graph.keys()) if (!state.has(f)) visit(f);

for (const p of problems) console.log(p);
console.log(`${graph.size} modules, ${edges} imports, ${problems.length} problem(s)`);
process.exit(problems.length > 0 ? 1 : 0);
