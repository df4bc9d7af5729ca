/**
 * One Redis connection (a single server or a Redis Cluster) behind one small interface, so the
 * cache has a single code path for both. Commands are never queued while disconnected (they
 * reject at once), reconnects back off up to `reconnectMaxMs`, and connection errors are
 * reported to a listener instead of crashing the process.
 */
import { createClient, createCluster, RESP_TYPES, type RedisArgument } from "redis";
import { StoreUnavailable } from "../errors.ts";

/** Raised when the connection cannot take commands right now. */
export class RedisUnavailableError extends StoreUnavailable {
  override name = "RedisUnavailableError";
  constructor(message: string) {
    super("redis", message);
  }
}

/** What {@link RedisConnection} reports about its connection. */
export interface ConnectionEvents {
  /** A connection error (refused, reset, TLS failure...); called for every reconnect attempt. */
  onError(err: Error): void;
  /** A (re)connection is ready to take commands. */
  onReady(): void;
}

/** Options of {@link RedisConnection.open}. */
export interface ConnectionOptions {
  /** `redis://` or `rediss://` URLs; several mean a cluster. */
  urls: string[];
  /** Use the cluster client even for one URL. */
  cluster: boolean;
  /** Connect timeout of one attempt, ms. */
  connectTimeoutMs: number;
  /** Longest pause between reconnect attempts, ms. */
  reconnectMaxMs: number;
  /** Commands waiting for a reply at most, per connection (more reject at once). */
  maxPending: number;
  events: ConnectionEvents;
}

/** Replies of bulk strings as Buffers (values are binary). */
const AS_BUFFERS = { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer } };

interface Backend {
  send(key: string | undefined, readonly: boolean, args: RedisArgument[], buffers: boolean): Promise<unknown>;
  /** PING every master. */
  pingAll(): Promise<void>;
  destroy(): void;
  close(): Promise<void>;
}

function reconnectStrategy(maxMs: number): (retries: number) => number {
  // Exponential from 50 ms with jitter, capped: a restarted Redis is used again within ~maxMs.
  return (retries) => Math.min(50 * 2 ** Math.min(retries, 10), maxMs) + Math.floor(Math.random() * 50);
}

function singleBackend(url: string, o: ConnectionOptions): Backend {
  const client = createClient({
    url,
    name: "feature-store",
    disableOfflineQueue: true,
    commandsQueueMaxLength: o.maxPending,
    socket: { connectTimeout: o.connectTimeoutMs, reconnectStrategy: reconnectStrategy(o.reconnectMaxMs) },
  });
  client.on("error", (err: Error) => o.events.onError(err));
  client.on("ready", () => o.events.onReady());
  // Resolves on the first successful connection; retries by itself until then.
  client.connect().catch((err: unknown) => o.events.onError(err instanceof Error ? err : new Error(String(err))));
  return {
    send: (_key, _readonly, args, buffers) => client.sendCommand<unknown>(args, buffers ? AS_BUFFERS : undefined),
    pingAll: async () => {
      await client.sendCommand<unknown>(["PING"]);
    },
    destroy: () => client.destroy(),
    close: () => client.close(),
  };
}

function clusterBackend(urls: string[], o: ConnectionOptions): Backend {
  const first = new URL(urls[0] as string);
  const tls = first.protocol === "rediss:";
  if (urls.some((u) => new URL(u).protocol !== first.protocol)) throw new Error("REDIS_URL: cluster node URLs must all be redis:// or all rediss://");
  const strategy = reconnectStrategy(o.reconnectMaxMs);
  const cluster = createCluster({
    rootNodes: urls.map((url) => ({ url })),
    // Nodes discovered through CLUSTER SLOTS get these (credentials and TLS of the first URL).
    defaults: {
      name: "feature-store",
      disableOfflineQueue: true,
      commandsQueueMaxLength: o.maxPending,
      ...(first.username ? { username: decodeURIComponent(first.username) } : {}),
      ...(first.password ? { password: decodeURIComponent(first.password) } : {}),
      socket: tls
        ? { tls: true, connectTimeout: o.connectTimeoutMs, reconnectStrategy: strategy }
        : { connectTimeout: o.connectTimeoutMs, reconnectStrategy: strategy },
    },
  });
  cluster.on("error", (err: Error) => o.events.onError(err));
  cluster.on("node-error", (err: Error) => o.events.onError(err));
  let connected = false;
  let destroyed = false;
  // Before connect() resolves the cluster cannot route commands yet: report readiness then.
  cluster.on("node-ready", () => {
    if (connected) o.events.onReady();
  });
  // Unlike a single client, the cluster client gives up when no root node answers: retry here.
  const connectLoop = async (): Promise<void> => {
    for (let attempt = 0; !destroyed; attempt++) {
      try {
        await cluster.connect();
        if (destroyed) {
          cluster.destroy();
          return;
        }
        connected = true;
        o.events.onReady();
        return;
      } catch (err) {
        o.events.onError(err instanceof Error ? err : new Error(String(err)));
        await Bun.sleep(strategy(attempt));
      }
    }
  };
  void connectLoop();
  return {
    send: (key, readonly, args, buffers) => {
      if (!connected) return Promise.reject(new RedisUnavailableError("Redis Cluster is not connected"));
      return cluster.sendCommand<unknown>(key, readonly, args, buffers ? AS_BUFFERS : undefined);
    },
    pingAll: async () => {
      if (!connected) throw new RedisUnavailableError("Redis Cluster is not connected");
      const masters = cluster.masters;
      if (masters.length === 0) throw new RedisUnavailableError("Redis Cluster has no known masters");
      await Promise.all(masters.map(async (m) => (await cluster.nodeClient(m)).sendCommand<unknown>(["PING"])));
    },
    destroy: () => {
      destroyed = true;
      if (connected) cluster.destroy();
    },
    close: async () => {
      destroyed = true;
      if (connected) await cluster.close();
    },
  };
}

function destroyQuietly(b: Backend): void {
  try {
    b.destroy();
  } catch {
    // already closed: nothing left to drop
  }
}

/** A Redis server or cluster connection that can be rebuilt when it stops answering. */
export class RedisConnection {
  /** True when talking to a Redis Cluster. */
  readonly isCluster: boolean;
  private backend: Backend;

  private constructor(private readonly opts: ConnectionOptions) {
    this.isCluster = opts.cluster || opts.urls.length > 1;
    this.backend = this.create();
  }

  /** Starts connecting (in the background: commands reject until the connection is ready). */
  static open(opts: ConnectionOptions): RedisConnection {
    if (opts.urls.length === 0) throw new Error("REDIS_URL names no server");
    for (const u of opts.urls) {
      if (!/^rediss?:\/\//.test(u)) throw new Error(`REDIS_URL: ${JSON.stringify(u.replace(/\/\/[^@]*@/, "//***@"))} is not a redis:// or rediss:// URL`);
    }
    return new RedisConnection(opts);
  }

  private create(): Backend {
    return this.isCluster ? clusterBackend(this.opts.urls, this.opts) : singleBackend(this.opts.urls[0] as string, this.opts);
  }

  /**
   * Sends one command, routed by `key` on a cluster (`undefined`: any node). Bulk strings come
   * back as Buffers when `buffers` is set. Rejects at once while disconnected.
   */
  send(key: string | undefined, args: RedisArgument[], opts: { readonly?: boolean; buffers?: boolean } = {}): Promise<unknown> {
    return this.backend.send(key, opts.readonly ?? false, args, opts.buffers ?? false);
  }

  /** PING the server, or every master of a cluster. */
  pingAll(): Promise<void> {
    return this.backend.pingAll();
  }

  /**
   * Drops the connection (failing whatever waits on it) and connects again: for a peer that
   * stopped answering without closing the socket, which the client would otherwise wait on
   * for as long as TCP retransmits.
   */
  reset(): void {
    const old = this.backend;
    this.backend = this.create();
    destroyQuietly(old);
  }

  /** Closes gracefully (pending commands finish), or drops the connection after `graceMs`. */
  async close(graceMs: number): Promise<void> {
    const b = this.backend;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), graceMs);
    });
    try {
      const r = await Promise.race([b.close().then(() => "closed" as const), timedOut]);
      if (r === "timeout") destroyQuietly(b);
    } catch {
      destroyQuietly(b);
    } finally {
      clearTimeout(timer);
    }
  }
}
