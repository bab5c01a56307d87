-- The event log. Writers append inside BEGIN IMMEDIATE, which SQLite serialises: positions are gap-free and
-- become visible in order.
CREATE TABLE events (
    position       INTEGER PRIMARY KEY CHECK (position > 0),
    event_id       BLOB    NOT NULL UNIQUE CHECK (length(event_id) = 16),
    stream_id      TEXT    NOT NULL,
    version        INTEGER NOT NULL CHECK (version > 0),
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL CHECK (schema_version > 0),
    data           TEXT    NOT NULL,
    metadata       TEXT    NOT NULL,
    recorded_at    INTEGER NOT NULL, -- microseconds since the Unix epoch
    prev_hash      BLOB    NOT NULL CHECK (length(prev_hash) = 32),
    hash           BLOB    NOT NULL CHECK (length(hash) = 32),
    UNIQUE (stream_id, version)
);

CREATE TABLE idempotency_keys (
    tenant_id      TEXT    NOT NULL,
    key            TEXT    NOT NULL,
    request_hash   BLOB    NOT NULL,
    stream_id      TEXT    NOT NULL,
    first_version  INTEGER NOT NULL,
    last_version   INTEGER NOT NULL,
    first_position INTEGER NOT NULL,
    last_position  INTEGER NOT NULL,
    created_at     INTEGER NOT NULL, -- microseconds since the Unix epoch
    PRIMARY KEY (tenant_id, key)
) WITHOUT ROWID;
