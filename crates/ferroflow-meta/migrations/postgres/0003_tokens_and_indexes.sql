-- API tokens: only a SHA-256 hash of each secret is kept; a token has one role.
CREATE TABLE api_tokens (
    name        TEXT    PRIMARY KEY,
    role        TEXT    NOT NULL,
    secret_hash TEXT    NOT NULL UNIQUE,
    create_time BIGINT  NOT NULL
);
-- Filters of event listings and listeners.
CREATE INDEX events_type ON events (event_type, event_offset);
CREATE INDEX events_namespace ON events (namespace, event_offset);
CREATE INDEX events_sender ON events (sender, event_offset);
