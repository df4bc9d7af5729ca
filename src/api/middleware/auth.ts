import type { MiddlewareHandler } from "hono";
import { AppError } from "../../errors.ts";
import type { KeyRing } from "../../serving/keys.ts";
import type { AppEnv } from "../env.ts";

const BEARER = /^Bearer\s+(\S+)\s*$/i;

/**
 * Authenticates every /api/v1 request by `X-API-Key` or `Authorization: Bearer`. Unknown,
 * revoked and expired keys get the same 401 as a missing one; a key created by another process
 * a moment ago is found in the database (see {@link KeyRing.lookup}).
 */
export function authenticate(keys: KeyRing): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const presented = c.req.header("x-api-key")?.trim() || BEARER.exec(c.req.header("authorization") ?? "")?.[1];
    // Known keys are answered from memory; only a key the ring does not know costs a (bounded,
    // shared) database read, in case another process created it since the last reload.
    const principal = presented ? (keys.authenticate(presented) ?? (await keys.lookup(presented))) : null;
    if (!principal) {
      throw new AppError("unauthenticated", "a valid API key is required (X-API-Key or Authorization: Bearer)", {
        headers: { "www-authenticate": 'Bearer realm="feature-store"' },
      });
    }
    c.set("principal", principal);
    await next();
  };
}
