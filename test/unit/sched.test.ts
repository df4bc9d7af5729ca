/**
 * src/lib/sched.ts on this machine's kernel: a thread asks for a policy and a time slice and
 * holds them (read back by another thread with sched_getattr, and in /proc), keeping its nice
 * value; a request the kernel refuses changes nothing and says why. The requests run on a thread
 * of their own, never on the test runner's. Runs where the kernel has slices of a thread's own
 * (Linux 6.12 and later, x86_64 or aarch64).
 */
import { afterAll, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { release } from "node:os";
import { readThreadSchedule, SCHED_BATCH, SCHED_OTHER, type ScheduleOutcome, type ScheduleRequest } from "../../src/lib/sched.ts";

const [major = 0, minor = 0] = release().split(".").map(Number);
const SLICES = process.platform === "linux" && (major > 6 || (major === 6 && minor >= 12)) && (process.arch === "x64" || process.arch === "arm64");

const worker = new Worker(new URL("./fixtures/sched-thread.ts", import.meta.url));
afterAll(() => worker.terminate());

/** The outcome of `request` on the fixture's thread. */
function onThread(request: ScheduleRequest): Promise<ScheduleOutcome> {
  return new Promise((resolve) => {
    worker.onmessage = (e: MessageEvent<ScheduleOutcome>) => resolve(e.data);
    worker.postMessage(request);
  });
}

test.skipIf(!SLICES)("a thread holds the policy and slice it asks for, and keeps its nice value", async () => {
  const mine = readThreadSchedule();
  if (mine === undefined) throw new Error("sched_getattr failed on this thread");
  const out = await onThread({ policy: SCHED_BATCH, sliceUs: 5000 });
  if (!out.applied) throw new Error(out.reason);
  expect(out.after).toEqual({ policy: SCHED_BATCH, nice: out.before.nice, sliceNs: 5_000_000 });
  // read from this thread, by the other's id, and in /proc
  expect(readThreadSchedule(out.tid)).toEqual(out.after);
  const proc = `/proc/${process.pid}/task/${out.tid}/sched`;
  if (existsSync(proc)) expect(/^se\.slice\s+:\s+(\d+)/m.exec(readFileSync(proc, "utf8"))?.[1]).toBe("5000000");
  // back to the default slice (0), the policy too
  const back = await onThread({ policy: SCHED_OTHER, sliceUs: 0 });
  if (!back.applied) throw new Error(back.reason);
  expect(back.after).toEqual({ policy: SCHED_OTHER, nice: out.before.nice, sliceNs: mine.sliceNs });
  // this thread asked for nothing and holds what it held
  expect(readThreadSchedule()).toEqual(mine);
});

test.skipIf(!SLICES)("a request the kernel refuses changes nothing and says why", async () => {
  const before = await onThread({ policy: SCHED_OTHER, sliceUs: 0 });
  if (!before.applied) throw new Error(before.reason);
  const out = await onThread({ policy: 99 as typeof SCHED_OTHER, sliceUs: 1000 });
  expect(out).toEqual({ applied: false, reason: "sched_setattr refused (EINVAL)" });
  expect(readThreadSchedule(before.tid)).toEqual(before.after);
});
