-- Metadata Service: projects, datasets, workflows and their snapshots, executions, job
-- executions, artifacts and metrics. Each record is a typed JSON document under a kind, unique
-- by (kind, project, name); `parent` links it to its owner (a workflow's snapshot, an
-- execution's job executions, a model version's metrics).
CREATE TABLE records (
    id          BIGSERIAL PRIMARY KEY,
    kind        TEXT    NOT NULL,
    project     TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    parent      TEXT,
    body        TEXT    NOT NULL,
    revision    BIGINT  NOT NULL,
    create_time BIGINT  NOT NULL,
    update_time BIGINT  NOT NULL,
    UNIQUE (kind, project, name)
);
CREATE INDEX records_parent ON records (kind, parent);
