/**
 * The garbage collections in a server's log (`bun bench/gc-log.ts LOG`), for a server run with
 * `BUN_JSC_logGC=1` (JavaScriptCore then writes every collection to stderr, which the benchmark
 * servers log to bench/results/tmp/server-NAME.log; e.g. `BUN_JSC_logGC=1 bun bench/stall.ts`).
 * Prints one line per collection once the first online lookup was logged: the time of the access
 * log line before it (the collector's lines carry none), which heap (one per JS thread: the
 * serving thread, each bulk-lane worker), eden or full, the heap size before and after, the
 * pauses of the thread it stopped (ms) and the whole cycle (ms); then a summary per heap.
 */
import { readFileSync } from "node:fs";

const file = process.argv[2];
if (file === undefined) {
  console.error("usage: bun bench/gc-log.ts SERVER_LOG");
  process.exit(2);
}
const text = readFileSync(file, "utf8");

interface Open {
  kind: string;
  at: string;
  before: string;
  pauses: number[];
}
interface PerHeap {
  eden: number;
  full: number;
  maxPause: number;
  pauses: number;
}
let at = "";
let serving = false;
const open = new Map<string, Open>();
const heaps = new Map<string, PerHeap>();
for (const line of text.split("\n")) {
  if (line.startsWith("{")) {
    const m = /"time":"[^T"]+T([^Z"]+)Z"/.exec(line);
    if (m) at = m[1] as string;
    if (!serving && line.includes('"/api/v1/features/online"')) serving = true;
    continue;
  }
  if (!serving) continue;
  const h = /^\[GC<(0x[0-9a-f]+)>: (.*)$/.exec(line);
  if (!h) continue;
  const heap = h[1] as string;
  const rest = h[2] as string;
  const start = /^START M (\d+kb) => (\w+)/.exec(rest);
  if (start) open.set(heap, { kind: start[2] as string, at, before: start[1] as string, pauses: [] });
  const c = open.get(heap);
  if (c === undefined) continue;
  for (const p of rest.matchAll(/p=([\d.]+)ms \(max/g)) c.pauses.push(Number(p[1]));
  const end = /=> (\d+kb), p=[\d.]+ms \(max [\d.]+\), cycle ([\d.]+)ms END/.exec(rest);
  if (!end) continue;
  open.delete(heap);
  const s = heaps.get(heap) ?? { eden: 0, full: 0, maxPause: 0, pauses: 0 };
  heaps.set(heap, s);
  if (c.kind.startsWith("Full")) s.full++;
  else s.eden++;
  s.maxPause = Math.max(s.maxPause, ...c.pauses);
  s.pauses += c.pauses.reduce((a, b) => a + b, 0);
  console.log(`${c.at} ${heap} ${c.kind.padEnd(15)} ${c.before} -> ${end[1]}  pauses ${c.pauses.map((p) => p.toFixed(2)).join("+")} ms  cycle ${Number(end[2]).toFixed(1)} ms`);
}
console.log("| heap | eden | full | longest pause ms | pauses in all ms |");
console.log("| --- | ---: | ---: | ---: | ---: |");
for (const [heap, s] of heaps) console.log(`| ${heap} | ${s.eden} | ${s.full} | ${s.maxPause.toFixed(2)} | ${s.pauses.toFixed(1)} |`);
