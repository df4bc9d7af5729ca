/**
 * The one error a backend throws when it cannot answer for reasons outside the request: the
 * connection is down or was lost, the call timed out, the server is shutting down, overloaded
 * or locked. Callers answer 503 (HTTP) or retry (stream worker). Any other error out of a
 * backend is a bug or a broken invariant: a 500 `internal`, logged with its stack.
 */
import { TimeoutError } from "../lib/timeout.ts";

/** A store could not answer now; the same call may succeed later. */
export class StoreUnavailable extends Error {
  override name = "StoreUnavailable";

  /**
   * @param store which store (`PostgreSQL`, `SQLite`, `Redis`), for logs
   * @param message what failed, for logs (never shown to a client)
   */
  constructor(
    readonly store: string,
    message: string,
    opts: { cause?: unknown } = {},
  ) {
    super(message, { cause: opts.cause });
  }
}

/** True for a failure worth retrying: a {@link StoreUnavailable} or a timeout. */
export function isStoreUnavailable(err: unknown): boolean {
  return err instanceof StoreUnavailable || err instanceof TimeoutError;
}
