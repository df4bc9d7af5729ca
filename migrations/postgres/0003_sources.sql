-- Offline sources (issue 14): declared sources, their load state, and materialization jobs.
-- Times are epoch milliseconds; spec, run, args, progress and result are JSON text.

CREATE TABLE sources (
  tenant     TEXT    NOT NULL,
  name       TEXT    NOT NULL,
  spec       TEXT    NOT NULL,
  created_at BIGINT  NOT NULL,
  updated_at BIGINT  NOT NULL,
  PRIMARY KEY (tenant, name)
);

-- watermark: the greatest event time loaded by a completed run (for --incremental);
-- run: the unfinished run (its arguments, window and position), NULL when none.
CREATE TABLE source_state (
  tenant     TEXT    NOT NULL,
  name       TEXT    NOT NULL,
  watermark  BIGINT,
  run        TEXT,
  updated_at BIGINT  NOT NULL,
  PRIMARY KEY (tenant, name)
);

CREATE TABLE materialize_jobs (
  id         TEXT    PRIMARY KEY,
  tenant     TEXT    NOT NULL,
  source     TEXT    NOT NULL,
  status     TEXT    NOT NULL,
  args       TEXT    NOT NULL,
  progress   TEXT    NOT NULL DEFAULT '{}',
  result     TEXT,
  error      TEXT,
  created_at BIGINT  NOT NULL,
  updated_at BIGINT  NOT NULL
);
CREATE INDEX materialize_jobs_tenant ON materialize_jobs (tenant, created_at);
-- one active job per source
CREATE UNIQUE INDEX materialize_jobs_active ON materialize_jobs (tenant, source) WHERE status IN ('queued', 'running');
