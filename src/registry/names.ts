/** Names, references and entity ids, as the contract defines them. */

/** Feature and entity-type names. */
export const NAME_PATTERN = "^[a-z][a-z0-9_]{0,127}$";
export const NAME_RE = new RegExp(NAME_PATTERN);
/** A feature reference: `name`, `name@N`, or through a feature view `view:name`, `view:name@N`. */
export const REF_PATTERN = "^([a-z][a-z0-9_]{0,127}:)?[a-z][a-z0-9_]{0,127}(@[1-9][0-9]{0,8})?$";
const REF_RE = /^(?:([a-z][a-z0-9_]{0,127}):)?([a-z][a-z0-9_]{0,127})(?:@([1-9][0-9]{0,8}))?$/;
/** A plain feature reference (no view): `name` or `name@N`; also a service reference. */
export const PLAIN_REF_PATTERN = "^[a-z][a-z0-9_]{0,127}(@[1-9][0-9]{0,8})?$";

/** Largest entity id, in UTF-8 bytes. */
export const MAX_ENTITY_ID_BYTES = 512;

/** A parsed feature reference; `version` undefined means "the highest registered". */
export interface FeatureRef {
  ref: string;
  /** the feature view named before `:`, if any */
  view?: string | undefined;
  name: string;
  version: number | undefined;
}

/** Parses `name`, `name@N`, `view:name` or `view:name@N`; `null` when malformed. */
export function parseRef(ref: string): FeatureRef | null {
  const m = REF_RE.exec(ref);
  if (!m) return null;
  return { ref, view: m[1], name: m[2] as string, version: m[3] === undefined ? undefined : Number(m[3]) };
}

/** Why an entity id is not acceptable, or `null` when it is. */
export function entityIdProblem(id: string): string | null {
  if (id.length === 0) return "entity id must not be empty";
  if (id.includes("\u0000")) return "entity id must not contain U+0000";
  if (!id.isWellFormed()) return "entity id is not valid Unicode (lone surrogate)";
  if (Buffer.byteLength(id, "utf8") > MAX_ENTITY_ID_BYTES) return `entity id is longer than ${MAX_ENTITY_ID_BYTES} UTF-8 bytes`;
  return null;
}

/**
 * The stored entity id of an entity named by several key columns (in join-key order): the JSON
 * array of the values, so ("a|b", "c") and ("a", "b|c") stay different entities. One column is
 * stored as its value itself.
 */
export function compositeEntityId(values: readonly string[]): string {
  return values.length === 1 ? (values[0] as string) : JSON.stringify(values);
}
