import type { Principal } from "../serving/keys.ts";

/** Hono environment of the API: per-request variables. */
export interface AppEnv {
  Variables: {
    requestId: string;
    /** route template, for metrics and logs */
    route: string;
    principal: Principal;
  };
}
