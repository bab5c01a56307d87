-- The event log. Positions are assigned by the writer while it holds the row lock on dossier_log_head, and that
-- lock is held through commit: positions are gap-free and become visible in order (see docs/adr/0002).
CREATE TABLE dossier_log_head (
    id       boolean PRIMARY KEY DEFAULT true CHECK (id),
    position bigint  NOT NULL CHECK (position >= 0)
);
INSERT INTO dossier_log_head (id, position) VALUES (true, 0);

CREATE TABLE events (
    position       bigint      PRIMARY KEY CHECK (position > 0),
    event_id       uuid        NOT NULL UNIQUE,
    -- COLLATE "C": stream ids are identifiers; byte order is all the index needs, and far cheaper than a locale.
    stream_id      text        COLLATE "C" NOT NULL,
    version        bigint      NOT NULL CHECK (version > 0),
    event_type     text        NOT NULL,
    schema_version integer     NOT NULL CHECK (schema_version > 0),
    -- The canonical JSON text exactly as it was hashed (dossier validates it before hashing; the hash chain
    -- catches any later edit). Query it with data::jsonb.
    data           text        NOT NULL,
    metadata       text        NOT NULL,
    recorded_at    timestamptz NOT NULL,
    prev_hash      bytea       NOT NULL CHECK (length(prev_hash) = 32),
    hash           bytea       NOT NULL CHECK (length(hash) = 32),
    UNIQUE (stream_id, version)
);

-- Durable idempotency: the first outcome of every (tenant, key).
CREATE TABLE idempotency_keys (
    tenant_id      text        COLLATE "C" NOT NULL,
    key            text        COLLATE "C" NOT NULL,
    request_hash   bytea       NOT NULL,
    stream_id      text        NOT NULL,
    first_version  bigint      NOT NULL,
    last_version   bigint      NOT NULL,
    first_position bigint      NOT NULL,
    last_position  bigint      NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);
