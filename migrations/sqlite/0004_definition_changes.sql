-- Which tenant each version of the `definitions` change counter was bumped for, so that other
-- processes reload only that tenant's definitions (PostgreSQL's notification names it instead).
-- Written in the registering transaction; the writer keeps the last 1024 versions.
CREATE TABLE definition_changes (
  version INTEGER PRIMARY KEY,
  tenant  TEXT    NOT NULL
);
