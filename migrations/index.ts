/**
 * The migrations, embedded in the binary at build time (text imports). Append new files here
 * in order; an applied migration's text must never change (its checksum is recorded).
 */
import postgres0001 from "./postgres/0001_init.sql" with { type: "text" };
import postgres0002 from "./postgres/0002_feature_groups.sql" with { type: "text" };
import sqlite0001 from "./sqlite/0001_init.sql" with { type: "text" };
import sqlite0002 from "./sqlite/0002_feature_groups.sql" with { type: "text" };
import postgres0003 from "./postgres/0003_sources.sql" with { type: "text" };
import sqlite0003 from "./sqlite/0003_sources.sql" with { type: "text" };
import sqlite0004 from "./sqlite/0004_definition_changes.sql" with { type: "text" };
import sqlite0005 from "./sqlite/0005_value_changes.sql" with { type: "text" };
import sqlite0006 from "./sqlite/0006_values_clustered.sql" with { type: "text" };
import sqlite0007 from "./sqlite/0007_online_from_history.sql" with { type: "text" };
import postgres0004 from "./postgres/0004_online_fillfactor.sql" with { type: "text" };
import postgres0005 from "./postgres/0005_one_history_index.sql" with { type: "text" };

/** One schema migration. */
export interface Migration {
  /** `NNNN_name`, ordered */
  name: string;
  sql: string;
}

/** Embedded SQLite migrations, in order. */
export const sqliteMigrations: Migration[] = [
  { name: "0001_init", sql: sqlite0001 },
  { name: "0002_feature_groups", sql: sqlite0002 },
  { name: "0003_sources", sql: sqlite0003 },
  { name: "0004_definition_changes", sql: sqlite0004 },
  { name: "0005_value_changes", sql: sqlite0005 },
  { name: "0006_values_clustered", sql: sqlite0006 },
  { name: "0007_online_from_history", sql: sqlite0007 },
];

/** Embedded PostgreSQL migrations, in order. */
export const postgresMigrations: Migration[] = [
  { name: "0001_init", sql: postgres0001 },
  { name: "0002_feature_groups", sql: postgres0002 },
  { name: "0003_sources", sql: postgres0003 },
  { name: "0004_online_fillfactor", sql: postgres0004 },
  { name: "0005_one_history_index", sql: postgres0005 },
];
