/**
 * The scheduling a thread of `serve` asks the kernel for, by its role (src/lib/sched.ts says
 * why): the thread answering online lookups a short time slice (SERVING_SLICE_US), each
 * bulk-lane thread SCHED_BATCH and BULK_SLICE_US (default: the kernel's slice, not the serving
 * thread's it inherited), keeping its nice value.
 * THREAD_SCHEDULING=false asks for nothing. What was applied, or why nothing was, is logged at
 * debug; a refusal never stops anything.
 */
import type { Config } from "../config.ts";
import type { Logger } from "../log.ts";
import { SCHED_BATCH, SCHED_OTHER, scheduleThisThread, type ScheduleOutcome, type ScheduleRequest } from "../lib/sched.ts";

/** Which thread asks: the one answering online lookups, or one of the bulk lane's. */
export type ThreadRole = "serving" | "bulk";

/** The settings read here. */
export type SchedulingSettings = Pick<Config, "THREAD_SCHEDULING" | "SERVING_SLICE_US" | "BULK_SLICE_US">;

/** What a thread of `role` asks for. */
export function scheduleRequest(role: ThreadRole, cfg: SchedulingSettings): ScheduleRequest {
  return role === "serving" ? { policy: SCHED_OTHER, sliceUs: cfg.SERVING_SLICE_US } : { policy: SCHED_BATCH, sliceUs: cfg.BULK_SLICE_US };
}

const POLICY_NAMES: Record<number, string> = { 0: "other", 3: "batch", 5: "idle" };
const policyName = (p: number): string => POLICY_NAMES[p] ?? String(p);

/** Asks for the calling thread's scheduling by its role (undefined: THREAD_SCHEDULING is off). */
export function scheduleThread(role: ThreadRole, cfg: SchedulingSettings, log: Logger): ScheduleOutcome | undefined {
  if (!cfg.THREAD_SCHEDULING) {
    log.debug({ thread: role }, "thread scheduling off (THREAD_SCHEDULING=false): the kernel's defaults");
    return undefined;
  }
  const out = scheduleThisThread(scheduleRequest(role, cfg));
  if (out.applied) {
    const { tid, before, after } = out;
    log.debug(
      { thread: role, tid, policy: policyName(after.policy), nice: after.nice, slice_us: after.sliceNs / 1000, before: { policy: policyName(before.policy), slice_us: before.sliceNs / 1000 } },
      "thread scheduling applied",
    );
  } else {
    log.debug({ thread: role, reason: out.reason }, "thread scheduling not applied: the kernel's defaults");
  }
  return out;
}
