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
    if (changes.keys) deps.keys.reload().catch((err: unknown) => deps.log.warn({ err }, "key reload failed"));
    // a private online store cannot see other processes' writes: forget it (a shared one saw them)
    if (changes.values && !deps.stores.online.capabilities.sharedAcrossProcesses) void deps.stores.online.clear();
  });
}
