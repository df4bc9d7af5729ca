/**
 * A TCP proxy on 127.0.0.1 for tests that need a slow network: each client connection gets its
 * own upstream connection to `target`, opened `connectDelayMs` after the client connected (what
 * the client sends meanwhile is held and sent in order), and everything the upstream sends is
 * passed on `replyDelayMs` later (order kept). Stop it with `stop()`.
 */
import type { Socket } from "bun";

export interface TcpProxy {
  port: number;
  stop(): void;
}

export function startTcpProxy(target: { hostname: string; port: number }, opts: { connectDelayMs?: number; replyDelayMs?: number } = {}): TcpProxy {
  const connectDelayMs = opts.connectDelayMs ?? 0;
  const replyDelayMs = opts.replyDelayMs ?? 0;
  const later = (fn: () => void, ms: number) => (ms > 0 ? void setTimeout(fn, ms) : fn());
  type Side = { up?: Socket<undefined>; queue: Uint8Array[]; closed: boolean };
  const listener = Bun.listen<Side>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(client) {
        client.data = { queue: [], closed: false };
        later(() => {
          if (client.data.closed) return;
          void Bun.connect({
            hostname: target.hostname,
            port: target.port,
            socket: {
              open(up) {
                client.data.up = up;
                for (const chunk of client.data.queue) up.write(chunk);
                client.data.queue = [];
              },
              data(_up, chunk) {
                const copy = Buffer.from(chunk);
                later(() => client.write(copy), replyDelayMs);
              },
              close() {
                later(() => client.end(), replyDelayMs);
              },
              error() {
                client.end();
              },
            },
          });
        }, connectDelayMs);
      },
      data(client, chunk) {
        if (client.data.up) client.data.up.write(chunk);
        else client.data.queue.push(Buffer.from(chunk));
      },
      close(client) {
        client.data.closed = true;
        client.data.up?.end();
      },
    },
  });
  return { port: listener.port, stop: () => listener.stop(true) };
}
