/** Keeps a process's in-memory state in step with changes made by other processes. */
import type { Deps } from "./deps.ts";

/**
 * Subscribes to the database's change feed: reloads the registry snapshot and the key ring,
 * and forgets the in-process cache when another process wrote values.
 */
export function followChanges(deps: Deps): void {
  deps.stores.registry.watch((changes) => {
    if (changes.definitions) {
      deps.registry.reloadFor(changes.tenants).then(
        () => deps.log.debug("registry reloaded"),
        (err: unknown) => deps.log.warn({ err }, "registry reload failed"),
      );
    }
    if (changes.keys) reloadKeys(deps, 0);
    // a private online store cannot see other processes' writes: forget it (a shared one saw them)
    if (changes.values && !deps.stores.online.capabilities.sharedAcrossProcesses) void deps.stores.online.clear();
  });
}

/**
 * Reloads the key ring, retrying a failed reload (200 ms doubling to 5 s) until one succeeds: the
 * change feed has moved past this change, so a revocation must not wait for the next one.
 */
function reloadKeys(deps: Pick<Deps, "keys" | "log">, attempt: number): void {
  deps.keys.reload().catch((err: unknown) => {
    deps.log.warn({ err, attempt }, "key reload failed; retrying");
    setTimeout(() => reloadKeys(deps, attempt + 1), Math.min(5000, 200 * 2 ** attempt)).unref?.();
  });
}
