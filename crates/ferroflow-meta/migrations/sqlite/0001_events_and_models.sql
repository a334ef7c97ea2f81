-- Notification Service: the event log. The offset is global, gap-free and monotonic: it is
-- assigned inside the writing transaction as the previous maximum plus one.
CREATE TABLE events (
    event_offset INTEGER PRIMARY KEY,
    key          TEXT    NOT NULL,
    value        TEXT    NOT NULL,
    event_type   TEXT    NOT NULL,
    namespace    TEXT    NOT NULL,
    sender       TEXT    NOT NULL,
    context      TEXT,
    create_time  INTEGER NOT NULL,
    client_id    TEXT,
    client_seq   INTEGER
);
-- Idempotent send: one event per (client id, sequence number).
CREATE UNIQUE INDEX events_client_seq ON events (client_id, client_seq)
    WHERE client_id IS NOT NULL;
CREATE INDEX events_key ON events (key, event_offset);

-- Model Center.
CREATE TABLE models (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL UNIQUE,
    description TEXT    NOT NULL DEFAULT '',
    create_time INTEGER NOT NULL
);
CREATE TABLE model_versions (
    model_id      INTEGER NOT NULL REFERENCES models (id),
    version       INTEGER NOT NULL,
    uri           TEXT    NOT NULL,
    flavor        TEXT    NOT NULL,
    stage         TEXT    NOT NULL,
    metrics       TEXT    NOT NULL DEFAULT '{}',
    job_execution TEXT,
    datasets      TEXT    NOT NULL DEFAULT '[]',
    create_time   INTEGER NOT NULL,
    update_time   INTEGER NOT NULL,
    PRIMARY KEY (model_id, version)
);
-- At most one DEPLOYED version per model, enforced by the database itself.
CREATE UNIQUE INDEX model_versions_one_deployed ON model_versions (model_id)
    WHERE stage = 'DEPLOYED';
