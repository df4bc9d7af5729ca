/** Feature views and feature services as the registry stores them (the store layer persists these shapes). */

/** Feature view (`view`) or feature service (`service`). */
export type GroupKind = "view" | "service";

/** What a view or service consists of (stored as JSON). */
export interface GroupSpec {
  /** a view's entity type (every member has it); absent for services */
  entity_type?: string;
  /** a view's join key columns, as Feast clients name them (default: the entity type) */
  join_keys?: string[];
  /** views: plain references (`name`, `name@N`); services: any references (`view:*`, `view:f`, `f@N`) */
  features: string[];
  /** a view's push source name, for Feast's `POST /push` */
  push_source?: string;
}

/** A registered view or service version, as stored. */
export interface GroupRow {
  id: number;
  tenant: string;
  kind: GroupKind;
  name: string;
  version: number;
  spec: GroupSpec;
  description: string | null;
  owner: string | null;
  tags: Record<string, string>;
  created_at: number;
  updated_at: number;
}

/** A view or service to insert (the store assigns the id). */
export type NewGroup = Omit<GroupRow, "id">;
