/** Readiness: which stores answer, and what that means for the server as a whole. */
import type { z } from "@hono/zod-openapi";
import { withTimeout } from "../lib/timeout.ts";
import type { Readiness as ReadinessSchema } from "../schemas.ts";
import type { Deps } from "./deps.ts";

/** The /readyz body (the response schema's type). */
export type Readiness = z.output<typeof ReadinessSchema>;

const PING_TIMEOUT_MS = 1000;

async function up(p: () => Promise<void>): Promise<boolean> {
  try {
    await withTimeout(p(), PING_TIMEOUT_MS, "ping");
    return true;
  } catch {
    return false;
  }
}

/**
 * ok: every store answers; degraded: the database or a shared online store (Redis) is down but
 * the other answers; down: the database is down and no shared online store answers, or the server is draining.
 */
export async function checkReadiness(deps: Pick<Deps, "stores" | "metrics">, draining: boolean): Promise<Readiness> {
  const { registry, online } = deps.stores;
  // a private (in-process) online store is this process itself: nothing to ping
  const shared = online.capabilities.sharedAcrossProcesses;
  const [dbUp, cacheUp] = await Promise.all([up(() => registry.ping()), shared ? up(() => online.ping()) : true]);
  deps.metrics.storeUp.set({ store: "database" }, dbUp ? 1 : 0);
  deps.metrics.storeUp.set({ store: "cache" }, cacheUp ? 1 : 0);
  const stores: Readiness["stores"] = { database: dbUp ? "ok" : "down", cache: shared ? (cacheUp ? "ok" : "down") : "in_process" };
  let status: Readiness["status"];
  if (dbUp && cacheUp) status = "ok";
  else if (dbUp || (shared && cacheUp)) status = "degraded";
  else status = "down";
  return { status: draining ? "down" : status, stores };
}
