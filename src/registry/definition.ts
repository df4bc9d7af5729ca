/** Feature definitions as the registry stores them (the store layer persists these shapes). */
import type { DtypeName } from "./dtype.ts";

/** A registered feature version as stored. */
export interface DefinitionRow {
  id: number;
  tenant: string;
  name: string;
  version: number;
  dtype: DtypeName;
  entity_type: string;
  ttl_hours: number | null;
  description: string | null;
  owner: string | null;
  tags: Record<string, string>;
  created_at: number;
  updated_at: number;
}

/** A definition to insert (the store assigns the id). */
export type NewDefinition = Omit<DefinitionRow, "id">;

/** Metadata replacement for an existing definition. */
export interface MetadataUpdate {
  id: number;
  description: string | null;
  owner: string | null;
  tags: Record<string, string>;
  updated_at: number;
}

/** What a register transaction decided, given the tenant's current definitions. */
export interface RegisterPlan {
  inserts: NewDefinition[];
  updates: MetadataUpdate[];
}

/** A definition row as a database returns it: dtype unchecked, tags as the backend stores them (JSON text or parsed). */
export type DefinitionRecord<Tags = string> = Omit<DefinitionRow, "dtype" | "tags"> & { dtype: string; tags: Tags };
