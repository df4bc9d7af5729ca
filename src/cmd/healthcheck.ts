import { config, parseFlags, UsageError, type Command } from "./common.ts";

export const command: Command = {
  summary: "exit 0 when the server answers /readyz with 200",
  help: `Usage: feature-store healthcheck [URL]

Exits 0 when the server answers GET /readyz with 200 within 3 seconds, else 1. URL defaults to
http://127.0.0.1:$PORT (PORT default 8000); a URL with a path is probed as given (for the worker:
http://127.0.0.1:9464/healthz). For images without curl (distroless).`,
  async run(argv) {
    const { positionals } = parseFlags(argv, {}, true);
    if (positionals.length > 1) throw new UsageError("at most one URL");
    const base = positionals[0] ?? `http://127.0.0.1:${config().PORT}`;
    let url: URL;
    try {
      // A URL with a path is probed as given (e.g. the worker's /healthz); a bare origin gets /readyz.
      const u = new URL(base);
      url = u.pathname === "/" || u.pathname === "" ? new URL("/readyz", u) : u;
    } catch {
      console.error(`healthcheck: not a URL: ${base}`);
      return 2;
    }
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(3000) });
      const body = await res.text();
      if (res.status === 200) return 0;
      console.error(`healthcheck: ${url.href} answered ${res.status} ${body.slice(0, 200)}`);
      return 1;
    } catch (e) {
      console.error(`healthcheck: ${url.href}: ${(e as Error).message}`);
      return 1;
    }
  },
};
