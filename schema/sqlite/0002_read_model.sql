-- The read model: documents and chunks as the API serves them, projected from the log (dossier-projections).
-- Every row belongs to a generation of its projection: queries read the live one, a rebuild fills the next, and
-- switching is one update of projections.live_generation. Ids are 16-byte BLOBs (as events.event_id), whose byte
-- order is the UUIDs' order; timestamps are microseconds since the Unix epoch.

CREATE TABLE projections (
    name            TEXT    PRIMARY KEY,
    live_generation INTEGER NOT NULL CHECK (live_generation > 0)
) WITHOUT ROWID;

-- Each generation's checkpoint; the runner moves it in the same transaction as the rows it writes.
CREATE TABLE projection_checkpoints (
    name       TEXT    NOT NULL,
    generation INTEGER NOT NULL CHECK (generation > 0),
    position   INTEGER NOT NULL CHECK (position >= 0),
    state      TEXT    NOT NULL CHECK (state IN ('running', 'stopped')),
    error      TEXT,
    updated_at INTEGER NOT NULL, -- microseconds since the Unix epoch
    PRIMARY KEY (name, generation)
) WITHOUT ROWID;

-- Rowid tables (not WITHOUT ROWID): document rows carry user metadata and chunk rows carry text, both often larger
-- than the twentieth of a page where SQLite recommends WITHOUT ROWID.
CREATE TABLE read_documents (
    generation     INTEGER NOT NULL CHECK (generation > 0),
    document_id    BLOB    NOT NULL CHECK (length(document_id) = 16),
    tenant_id      TEXT    NOT NULL,
    filename       TEXT    NOT NULL,
    media_type     TEXT    NOT NULL,
    size_bytes     INTEGER NOT NULL CHECK (size_bytes >= 0),
    sha256         TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    stream_version INTEGER NOT NULL CHECK (stream_version >= 0),
    chunk_count    INTEGER NOT NULL CHECK (chunk_count >= 0),
    metadata       TEXT    NOT NULL, -- a JSON object
    failure_reason TEXT,
    created_at     INTEGER NOT NULL, -- microseconds since the Unix epoch
    updated_at     INTEGER NOT NULL, -- microseconds since the Unix epoch
    deleted        INTEGER NOT NULL CHECK (deleted IN (0, 1)),
    PRIMARY KEY (generation, document_id)
);

-- Listing pages through a tenant's visible documents by id, optionally of one status. Deleted documents are never
-- listed, so the indexes leave them out (queries repeat `deleted = 0` to use them).
CREATE INDEX read_documents_by_tenant_status ON read_documents (generation, tenant_id, status, document_id)
    WHERE deleted = 0;
CREATE INDEX read_documents_by_tenant ON read_documents (generation, tenant_id, document_id) WHERE deleted = 0;

CREATE TABLE read_chunks (
    generation  INTEGER NOT NULL CHECK (generation > 0),
    document_id BLOB    NOT NULL CHECK (length(document_id) = 16),
    chunk_index INTEGER NOT NULL CHECK (chunk_index >= 0),
    text        TEXT    NOT NULL,
    byte_start  INTEGER NOT NULL CHECK (byte_start >= 0),
    byte_end    INTEGER NOT NULL,
    PRIMARY KEY (generation, document_id, chunk_index)
);
