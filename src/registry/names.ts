/** Names, references and entity ids, as the contract defines them. */

/** Feature and entity-type names. */
export const NAME_PATTERN = "^[a-z][a-z0-9_]{0,127}$";
/** A feature reference: `name` or `name@N`. */
export const REF_PATTERN = "^[a-z][a-z0-9_]{0,127}(@[1-9][0-9]{0,8})?$";
const REF_RE = /^([a-z][a-z0-9_]{0,127})(?:@([1-9][0-9]{0,8}))?$/;

/** Largest entity id, in UTF-8 bytes. */
export const MAX_ENTITY_ID_BYTES = 512;

/** A parsed feature reference; `version` undefined means "the highest registered". */
export interface FeatureRef {
  ref: string;
  name: string;
  version: number | undefined;
}

/** Parses `name` or `name@N`; `null` when malformed. */
export function parseRef(ref: string): FeatureRef | null {
  const m = REF_RE.exec(ref);
  if (!m) return null;
  return { ref, name: m[1] as string, version: m[2] === undefined ? undefined : Number(m[2]) };
}

/** Why an entity id is not acceptable, or `null` when it is. */
export function entityIdProblem(id: string): string | null {
  if (id.length === 0) return "entity id must not be empty";
  if (id.includes("\u0000")) return "entity id must not contain U+0000";
  if (!id.isWellFormed()) return "entity id is not valid Unicode (lone surrogate)";
  if (Buffer.byteLength(id, "utf8") > MAX_ENTITY_ID_BYTES) return `entity id is longer than ${MAX_ENTITY_ID_BYTES} UTF-8 bytes`;
  return null;
}
