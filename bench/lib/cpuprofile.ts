/**
 * Summarises a Chrome-format .cpuprofile (what `bun --cpu-prof` writes) by sample counts, not
 * by time deltas (which charge idle gaps to whatever ran last): self and inclusive share per
 * function, with idle samples excluded from the denominator.
 *
 * `bun bench/lib/cpuprofile.ts FILE.cpuprofile [top]`; CPUPROFILE_SKIP=0.4 leaves out the first
 * 40% of the samples (e.g. the cache fill before the measured load of bench/profile.ts).
 */
import { readFileSync } from "node:fs";

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

export interface ProfileSummary {
  samples: number;
  idle: number;
  self: { name: string; samples: number; share: number }[];
  inclusive: { name: string; samples: number; share: number }[];
}

function label(n: Node): string {
  const f = n.callFrame;
  const file = f.url.replace(/^.*\/node_modules\//, "").replace(/^.*\/src\//, "src/");
  return `${f.functionName || "(anonymous)"} ${file ? `${file}:${f.lineNumber + 1}` : "[native]"}`;
}

export function summarise(path: string, top = 40): ProfileSummary {
  const p = JSON.parse(readFileSync(path, "utf8")) as { nodes: Node[]; samples: number[] };
  const byId = new Map<number, Node>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) byId.set(n.id, n);
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<string, number>();
  const incl = new Map<string, number>();
  let idle = 0;
  const skip = Math.floor(p.samples.length * Math.min(1, Math.max(0, Number(process.env.CPUPROFILE_SKIP ?? 0) || 0)));
  const samples = p.samples.slice(skip);
  for (const id of samples) {
    const n = byId.get(id);
    if (!n) continue;
    const name = n.callFrame.functionName;
    if (name === "(idle)" || name === "(program)" || name === "(root)") {
      idle++;
      continue;
    }
    const l = label(n);
    self.set(l, (self.get(l) ?? 0) + 1);
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const m = byId.get(cur);
      if (!m) break;
      const ml = label(m);
      if (!seen.has(ml)) {
        seen.add(ml);
        incl.set(ml, (incl.get(ml) ?? 0) + 1);
      }
    }
  }
  const busy = samples.length - idle;
  const rank = (m: Map<string, number>) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, samples]) => ({ name, samples, share: Math.round((samples / busy) * 1000) / 10 }));
  return { samples: samples.length, idle, self: rank(self), inclusive: rank(incl) };
}

if (import.meta.main) {
  const file = process.argv[2];
  if (!file) {
    console.error("usage: bun bench/lib/cpuprofile.ts FILE.cpuprofile [top]");
    process.exit(2);
  }
  const s = summarise(file, Number(process.argv[3] ?? 40));
  console.log(`samples ${s.samples}, idle ${s.idle} (${Math.round((s.idle / s.samples) * 100)}%)\n\nSELF (% of busy samples)`);
  for (const r of s.self) console.log(`${String(r.share).padStart(5)}%  ${r.name}`);
  console.log("\nINCLUSIVE");
  for (const r of s.inclusive) console.log(`${String(r.share).padStart(5)}%  ${r.name}`);
}
