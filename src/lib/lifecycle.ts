/**
 * Process lifecycle: cleanups registered as things start, run in reverse on SIGTERM/SIGINT,
 * each bounded by the remaining time of one overall deadline.
 */
import { withTimeout } from "./timeout.ts";

/**
 * Resolves once the event loop has polled for I/O (setImmediate runs after the poll). `serve`
 * starts in steps separated by this, so a request that arrived meanwhile (the liveness probe)
 * is answered between two steps instead of after the whole start.
 */
export const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Imports the modules of `loads` one per turn of the event loop (see {@link nextTurn}): a
 * module's evaluation (with whatever it imports that is not evaluated yet) cannot be
 * interrupted, so a start that evaluates a large graph at once keeps a request that came in
 * meanwhile waiting for all of it; in steps, for one step at most.
 */
export async function importInTurns(loads: readonly (() => Promise<unknown>)[]): Promise<void> {
  for (const load of loads) {
    await nextTurn();
    await load();
  }
}

type Cleanup = { name: string; fn: () => Promise<unknown> | unknown };

export class Lifecycle {
  private readonly cleanups: Cleanup[] = [];
  private stopping: Promise<void> | undefined;

  /** Registers a cleanup; cleanups run last-registered first. */
  add(name: string, fn: () => Promise<unknown> | unknown): void {
    this.cleanups.push({ name, fn });
  }

  /** Runs every cleanup once (later calls return the same promise). Errors are reported, not thrown. */
  stop(deadlineMs: number, onError: (name: string, err: unknown) => void = () => {}): Promise<void> {
    this.stopping ??= (async () => {
      const end = Date.now() + deadlineMs;
      for (const c of [...this.cleanups].reverse()) {
        try {
          await withTimeout(Promise.resolve().then(c.fn), Math.max(1, end - Date.now()), c.name);
        } catch (err) {
          onError(c.name, err);
        }
      }
    })();
    return this.stopping;
  }

  /**
   * Calls `handler` on the first SIGTERM or SIGINT; a second signal exits at once, unless it comes
   * within `repeatGraceMs` of the first (a `serve --workers` worker gets Ctrl-C's SIGINT, or
   * systemd's SIGTERM to the whole group, both directly and from its supervisor: that is one
   * request to stop, and the drain goes on).
   */
  onSignal(handler: (signal: NodeJS.Signals) => void, repeatGraceMs = 0): void {
    let seenAt: number | undefined;
    const on = (signal: NodeJS.Signals) => {
      if (seenAt !== undefined) {
        if (Date.now() - seenAt < repeatGraceMs) return;
        process.exit(1);
      }
      seenAt = Date.now();
      handler(signal);
    };
    process.on("SIGTERM", on);
    process.on("SIGINT", on);
  }
}
