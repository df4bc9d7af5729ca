/**
 * The rate-limit counts of `serve --workers N` without Redis: the supervisor (itself worker 1)
 * holds them (one {@link LocalWindowStore}) and every other worker asks it over the IPC channel
 * Bun.spawn opens, so the N workers enforce one RATE_LIMIT_PER_KEY per key together, as one
 * process does. A worker whose question is not answered in time counts in its own process (the
 * rate limiter fails open, as with Redis).
 */
import { LocalWindowStore } from "./rate-limit.ts";
import type { WindowHit, WindowStore } from "../store/types.ts";

/** A worker's question. */
interface HitAsk {
  t: "rl_hit";
  n: number;
  id: string;
  limit: number;
  windowMs: number;
}

/** The supervisor's answer. */
interface HitAnswer {
  t: "rl_hit";
  n: number;
  hit: WindowHit;
}

/** The supervisor's side: answers the workers' questions from one set of counts. */
export class SupervisorWindows {
  /** The counts; the supervisor, itself worker 1, counts its own requests here directly. */
  readonly counts = new LocalWindowStore();

  /** Handles a message from a worker; `reply` sends the answer back to it. */
  onMessage(message: unknown, reply: (m: HitAnswer) => void): void {
    const m = message as Partial<HitAsk> | null;
    if (m?.t !== "rl_hit" || typeof m.id !== "string" || typeof m.n !== "number") return;
    reply({ t: "rl_hit", n: m.n, hit: this.counts.hitSync(m.id, Number(m.limit), Number(m.windowMs)) });
  }
}

/** A worker's side: a {@link WindowStore} answered by the supervisor. */
export class WorkerWindowStore implements WindowStore {
  private next = 1;
  private readonly waiting = new Map<number, (h: WindowHit) => void>();
  private readonly listener = (message: unknown) => {
    const m = message as Partial<HitAnswer> | null;
    if (m?.t !== "rl_hit" || typeof m.n !== "number" || m.hit === undefined) return;
    const resolve = this.waiting.get(m.n);
    this.waiting.delete(m.n);
    resolve?.(m.hit);
  };

  constructor(private readonly send: (m: HitAsk) => void = (m) => process.send?.(m)) {
    process.on("message", this.listener);
  }

  /** Whether this process has a channel to a supervisor. */
  static available(): boolean {
    return typeof process.send === "function";
  }

  hit(id: string, limit: number, windowMs: number): Promise<WindowHit> {
    const n = this.next++;
    return new Promise<WindowHit>((resolve, reject) => {
      this.waiting.set(n, resolve);
      try {
        this.send({ t: "rl_hit", n, id, limit, windowMs });
      } catch (err) {
        this.waiting.delete(n);
        reject(err);
      }
    });
  }

  async close(): Promise<void> {
    process.off("message", this.listener);
    this.waiting.clear();
  }
}
