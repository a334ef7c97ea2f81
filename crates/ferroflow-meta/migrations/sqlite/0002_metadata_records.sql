-- Metadata Service: projects, datasets, workflows and their snapshots, executions, job
-- executions, artifacts and metrics. Each record is a typed JSON document under a kind, unique
-- by (kind, project, name); `parent` links it to its owner (a workflow's snapshot, an
-- execution's job executions, a model version's metrics).
CREATE TABLE records (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT    NOT NULL,
    project     TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    parent      TEXT,
    body        TEXT    NOT NULL,
    revision    INTEGER NOT NULL,
    create_time INTEGER NOT NULL,
    update_time INTEGER NOT NULL,
    UNIQUE (kind, project, name)
);
CREATE INDEX records_parent ON records (kind, parent);
