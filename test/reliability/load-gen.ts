/**
 * The open-loop load generator, run as its own process (so it has its own event loop and a
 * connection pool large enough to really offer the load: BUN_CONFIG_MAX_HTTP_REQUESTS).
 *
 * `bun test/reliability/load-gen.ts '{"base", "key", "path", "bodies": [...], "rate", "seconds"}'`
 * prints one JSON line: the report, plus `bad503` (503s without Retry-After or not a problem).
 */
import { openLoop, post, type LoadReport } from "./support.ts";

/** What {@link runLoadGen} returns. */
export interface LoadGenResult extends LoadReport {
  /** 503 answers without Retry-After or without the `unavailable` problem code */
  bad503: number;
}

/** Runs the generator in a child process and returns its report. */
export async function runLoadGen(o: { base: string; key: string; path: string; bodies: unknown[]; rate: number; seconds: number; timeoutMs?: number }): Promise<LoadGenResult> {
  const p = Bun.spawn([process.execPath, import.meta.path, JSON.stringify(o)], {
    env: { ...process.env, BUN_CONFIG_MAX_HTTP_REQUESTS: "8192" },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  if ((await p.exited) !== 0) throw new Error(`load generator failed: ${err.slice(-2000)}`);
  return JSON.parse(out.trim().split("\n").at(-1) ?? "{}") as LoadGenResult;
}

if (import.meta.main) {
  const o = JSON.parse(process.argv[2] ?? "{}") as { base: string; key: string; path: string; bodies: unknown[]; rate: number; seconds: number; timeoutMs?: number };
  let bad503 = 0;
  const { report } = await openLoop(
    async (i) => {
      const res = await post(o.base, o.path, o.bodies[i % o.bodies.length], o.key, o.timeoutMs ?? 15_000);
      if (res.status === 503) {
        const text = await res.clone().text();
        if (!/^[1-9]\d*$/.test(res.headers.get("retry-after") ?? "") || !text.includes('"code":"unavailable"')) bad503++;
      }
      return res;
    },
    { rate: o.rate, seconds: o.seconds, maxOutstanding: 8000 },
  );
  console.log(JSON.stringify({ ...report, bad503 }));
}
