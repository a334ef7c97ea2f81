-- Notification Service: the event log. Offsets are assigned inside the writing transaction,
-- which holds the store's write lock, as the previous maximum plus one: gap-free.
CREATE TABLE events (
    event_offset BIGINT  PRIMARY KEY,
    key          TEXT    NOT NULL,
    value        TEXT    NOT NULL,
    event_type   TEXT    NOT NULL,
    namespace    TEXT    NOT NULL,
    sender       TEXT    NOT NULL,
    context      TEXT,
    create_time  BIGINT  NOT NULL,
    client_id    TEXT,
    client_seq   BIGINT
);
CREATE UNIQUE INDEX events_client_seq ON events (client_id, client_seq)
    WHERE client_id IS NOT NULL;
CREATE INDEX events_key ON events (key, event_offset);

-- Model Center.
CREATE TABLE models (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    description TEXT    NOT NULL DEFAULT '',
    create_time BIGINT  NOT NULL
);
CREATE TABLE model_versions (
    model_id      BIGINT  NOT NULL REFERENCES models (id),
    version       BIGINT  NOT NULL,
    uri           TEXT    NOT NULL,
    flavor        TEXT    NOT NULL,
    stage         TEXT    NOT NULL,
    metrics       TEXT    NOT NULL DEFAULT '{}',
    job_execution TEXT,
    datasets      TEXT    NOT NULL DEFAULT '[]',
    create_time   BIGINT  NOT NULL,
    update_time   BIGINT  NOT NULL,
    PRIMARY KEY (model_id, version)
);
CREATE UNIQUE INDEX model_versions_one_deployed ON model_versions (model_id)
    WHERE stage = 'DEPLOYED';
