/**
 * What the kernel's scheduler is asked for one thread: its scheduling policy and its time slice.
 *
 * Linux's fair scheduler (EEVDF, kernel 6.6 and later; a slice of one's own since 6.12) gives
 * each thread a virtual deadline of its eligible time plus its slice (`sched_attr.sched_runtime`,
 * 0.1-100 ms; the default is 0.7 ms x (1 + log2 of the cores), 1.4 ms on 2 cores). A thread with
 * a shorter slice gets an earlier deadline: when it wakes up it preempts a thread that is running
 * CPU-bound work instead of waiting for the end of that thread's slice, and this holds between
 * processes too (a group's slice is the shortest of its runnable threads', so it also counts
 * across session groups and cgroups, where a nice value does not). The thread answering online
 * lookups asks for a short slice; the bulk lane's threads for SCHED_BATCH (a thread the scheduler
 * takes for CPU-bound: its wake-ups never preempt another), keeping their nice value and, by
 * default, the kernel's slice. Not a long one: a group's deadline is set from the shortest slice
 * of its threads queued *when the group is queued*, and a thread joining a queued group (the
 * serving thread waking while a lane thread is runnable) changes the group's slice but not that
 * deadline (kernel/sched/fair.c, enqueue_task_fair): a 100 ms lane slice would put the whole
 * process's deadline up to 100 ms away while the lane works. No privilege is needed for either. Nothing here throws: a kernel, an architecture or a
 * sandbox (seccomp) that refuses the calls leaves the thread as it was, and says so.
 *
 * `sched_setattr`/`sched_getattr` have no wrapper in older glibc: they are called through
 * `syscall(2)` with `bun:ffi` (libc is opened on the first call).
 */
import { dlopen, read, type Pointer } from "bun:ffi";

/** SCHED_OTHER (SCHED_NORMAL): the default policy. */
export const SCHED_OTHER = 0;
/** SCHED_BATCH: like SCHED_OTHER, but the thread is taken for CPU-bound (its wake-ups never preempt). */
export const SCHED_BATCH = 3;

/** What the scheduler holds for one thread (sched_getattr). */
export interface ThreadSchedule {
  /** SCHED_OTHER 0, SCHED_BATCH 3, SCHED_IDLE 5, ... */
  policy: number;
  nice: number;
  /** the fair scheduler's time slice (the kernel's default, or the one asked for), ns */
  sliceNs: number;
}

/** What to ask for a thread. */
export interface ScheduleRequest {
  policy: typeof SCHED_OTHER | typeof SCHED_BATCH;
  /** the slice asked for, microseconds (the kernel keeps it within 100-100,000); 0: the kernel's default */
  sliceUs: number;
}

/** What {@link scheduleThisThread} did. */
export type ScheduleOutcome =
  | { applied: true; tid: number; before: ThreadSchedule; after: ThreadSchedule }
  | { applied: false; reason: string };

/** System call numbers of the architectures that have them here (Linux only). */
const SYSCALLS: Record<string, { setattr: number; getattr: number; gettid: number }> = {
  x64: { setattr: 314, getattr: 315, gettid: 186 },
  arm64: { setattr: 274, getattr: 275, gettid: 178 },
};

/** sizeof(struct sched_attr), SCHED_ATTR_SIZE_VER0 (up to sched_period). */
const ATTR_SIZE = 48;
/** what sched_getattr may fill (SCHED_ATTR_SIZE_VER1: util_min, util_max too) */
const ATTR_READ_SIZE = 56;

interface Native {
  syscall(nr: number, a: number, attr: Uint8Array, b: number, c: number): number;
  errno(): number;
  nr: { setattr: number; getattr: number; gettid: number };
}

let native: Native | string | undefined;

/** libc's `syscall` and `errno` through bun:ffi, or why they are not available. */
function load(): Native | string {
  if (native !== undefined) return native;
  const nr = process.platform === "linux" ? SYSCALLS[process.arch] : undefined;
  if (nr === undefined) return (native = `not supported on ${process.platform}/${process.arch}`);
  try {
    const lib = dlopen("libc.so.6", {
      syscall: { args: ["i64", "i64", "ptr", "i64", "i64"], returns: "i64" },
      __errno_location: { args: [], returns: "ptr" },
    });
    const { syscall, __errno_location } = lib.symbols;
    native = {
      syscall: (n, a, attr, b, c) => Number(syscall(n, a, attr, b, c)),
      errno: () => {
        const p = __errno_location();
        return p === null ? 0 : read.i32(p as Pointer, 0);
      },
      nr,
    };
  } catch (err) {
    native = `libc could not be loaded (${err instanceof Error ? err.message : String(err)})`;
  }
  return native;
}

/** A failed call's reason, by errno. */
function failure(what: string, n: Native): string {
  const e = n.errno();
  const name = e === 1 ? "EPERM" : e === 22 ? "EINVAL" : e === 38 ? "ENOSYS" : e === 3 ? "ESRCH" : `errno ${e}`;
  return `${what} refused (${name})`;
}

function readAttr(n: Native, tid: number): ThreadSchedule | string {
  const attr = new Uint8Array(ATTR_READ_SIZE);
  if (n.syscall(n.nr.getattr, tid, attr, ATTR_READ_SIZE, 0) !== 0) return failure("sched_getattr", n);
  const v = new DataView(attr.buffer);
  return { policy: v.getUint32(4, true), nice: v.getInt32(16, true), sliceNs: Number(v.getBigUint64(24, true)) };
}

/** What the scheduler holds for thread `tid` of any process (0: the calling thread), or undefined where it cannot be read. */
export function readThreadSchedule(tid = 0): ThreadSchedule | undefined {
  const n = load();
  if (typeof n === "string") return undefined;
  const s = readAttr(n, tid);
  return typeof s === "string" ? undefined : s;
}

/**
 * Asks the scheduler for `request` for the calling thread, keeping its nice value, and reads
 * back what it holds. Never throws; the outcome says what was applied, or why nothing was.
 * Threads this thread starts afterwards inherit what it holds then.
 */
export function scheduleThisThread(request: ScheduleRequest): ScheduleOutcome {
  const n = load();
  if (typeof n === "string") return { applied: false, reason: n };
  try {
    const before = readAttr(n, 0);
    if (typeof before === "string") return { applied: false, reason: before };
    const attr = new Uint8Array(ATTR_SIZE);
    const v = new DataView(attr.buffer);
    v.setUint32(0, ATTR_SIZE, true);
    v.setUint32(4, request.policy, true);
    // sched_flags 0; the nice value as it is (raising it back would need a privilege)
    v.setInt32(16, before.nice, true);
    v.setBigUint64(24, BigInt(Math.max(0, Math.round(request.sliceUs)) * 1000), true);
    if (n.syscall(n.nr.setattr, 0, attr, 0, 0) !== 0) return { applied: false, reason: failure("sched_setattr", n) };
    const after = readAttr(n, 0);
    if (typeof after === "string") return { applied: false, reason: after };
    return { applied: true, tid: n.syscall(n.nr.gettid, 0, attr, 0, 0), before, after };
  } catch (err) {
    return { applied: false, reason: err instanceof Error ? err.message : String(err) };
  }
}
