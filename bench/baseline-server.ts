/**
 * The bare-server baseline: a plain Bun.serve that reads the request body and answers a fixed
 * JSON body of N bytes for `POST /bytes/N` (and `GET /healthz`). Run side by side with the
 * feature store at the same rate and concurrency, it is the ceiling of what Bun's HTTP server
 * does on this machine, so our figures are reported as ratios to it.
 *
 * `bun bench/baseline-server.ts` (PORT, default 8099). Built as a single executable too, for
 * the cold-start baseline (`BASELINE_EXIT_AFTER_HEALTHZ` unused: the harness kills it).
 */
const bodies = new Map<number, Uint8Array>();

function bodyOf(n: number): Uint8Array {
  let b = bodies.get(n);
  if (b === undefined) {
    // a JSON string literal of exactly n bytes ("xxxx...")
    const inner = Math.max(0, n - 2);
    b = new TextEncoder().encode(`"${"x".repeat(inner)}"`.slice(0, Math.max(n, 2)));
    bodies.set(n, b);
  }
  return b;
}

const server = Bun.serve({
  port: Number(process.env.PORT ?? 8099),
  hostname: "127.0.0.1",
  development: false,
  async fetch(req) {
    const url = req.url;
    const at = url.indexOf("/bytes/");
    if (at >= 0) {
      await req.arrayBuffer();
      return new Response(bodyOf(Number(url.slice(at + 7))), { headers: { "content-type": "application/json" } });
    }
    if (url.endsWith("/healthz")) return new Response('{"status":"ok"}', { headers: { "content-type": "application/json" } });
    return new Response("not found", { status: 404 });
  },
});

process.on("SIGTERM", () => {
  server.stop(true);
  process.exit(0);
});
