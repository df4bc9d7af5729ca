/** Keeps a process's in-memory state in step with changes made by other processes. */
import type { Deps } from "./deps.ts";

/**
 * Subscribes to the database's change feed: reloads the registry snapshot and the key ring,
 * and makes the in-process cache forget what another process wrote: the entities it changed
 * when the feed names them (SQLite), else everything. Synchronous: the feed reports a change
 * before the read that noticed it goes on (see serving/online.ts), so that read sees it.
 */
export function followChanges(deps: Deps): void {
  const keys = retried(deps, "key reload");
  const registry = retried(deps, "registry reload");
  deps.stores.registry.watch((changes) => {
    // a retry reloads every tenant: the changes of several notices may be missing by then
    if (changes.definitions) registry((retry) => deps.registry.reloadFor(retry ? undefined : changes.tenants));
    if (changes.keys) keys(() => deps.keys.reload());
    // a private online store cannot see other processes' writes: forget them (a shared one saw them)
    const online = deps.stores.online;
    if (changes.values && !online.capabilities.sharedAcrossProcesses) {
      if (changes.entities && online.invalidateEntities) online.invalidateEntities(changes.entities);
      else void online.clear();
    }
  });
}

/**
 * Runs a reload now; a failed one is retried (200 ms doubling to 5 s) until one succeeds, with at
 * most one retry scheduled at a time: the change feed has moved past the change, so a revocation
 * or a registration must not wait for the next one.
 */
function retried(deps: Pick<Deps, "log">, what: string): (reload: (retry: boolean) => Promise<unknown>) => void {
  let scheduled = false;
  const run = (reload: (retry: boolean) => Promise<unknown>, attempt: number): void => {
    reload(attempt > 0).then(
      () => deps.log.debug({ attempt }, `${what} done`),
      (err: unknown) => {
        deps.log.warn({ err, attempt }, `${what} failed; retrying`);
        if (scheduled) return;
        scheduled = true;
        setTimeout(() => {
          scheduled = false;
          run(reload, attempt + 1);
        }, Math.min(5000, 200 * 2 ** attempt)).unref?.();
      },
    );
  };
  return (reload) => run(reload, 0);
}
