/** Rejects with a {@link TimeoutError} when `p` takes longer than `ms`. */
export class TimeoutError extends Error {
  override name = "TimeoutError";
}

/** Races a promise against a timer (the timer never keeps the process alive). */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`${what} timed out after ${ms} ms`)), ms);
    timer.unref?.();
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}
