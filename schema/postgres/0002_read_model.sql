-- The read model: documents and chunks as the API serves them, projected from the log (dossier-projections).
-- Every row belongs to a generation of its projection: queries read the live one, a rebuild fills the next, and
-- switching is one update of projections.live_generation. COLLATE "C" on identifiers, as in the event log.

CREATE TABLE projections (
    name            text    COLLATE "C" PRIMARY KEY,
    live_generation integer NOT NULL CHECK (live_generation > 0)
);

-- Each generation's checkpoint; the runner moves it in the same transaction as the rows it writes.
CREATE TABLE projection_checkpoints (
    name       text        COLLATE "C" NOT NULL,
    generation integer     NOT NULL CHECK (generation > 0),
    position   bigint      NOT NULL CHECK (position >= 0),
    state      text        COLLATE "C" NOT NULL CHECK (state IN ('running', 'stopped')),
    error      text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, generation)
);

CREATE TABLE read_documents (
    generation     integer     NOT NULL CHECK (generation > 0),
    document_id    uuid        NOT NULL,
    tenant_id      text        COLLATE "C" NOT NULL,
    filename       text        NOT NULL,
    media_type     text        COLLATE "C" NOT NULL,
    size_bytes     bigint      NOT NULL CHECK (size_bytes >= 0),
    sha256         text        COLLATE "C" NOT NULL,
    status         text        COLLATE "C" NOT NULL,
    stream_version bigint      NOT NULL CHECK (stream_version >= 0),
    chunk_count    integer     NOT NULL CHECK (chunk_count >= 0),
    metadata       jsonb       NOT NULL,
    failure_reason text,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    deleted        boolean     NOT NULL,
    PRIMARY KEY (generation, document_id)
);

-- Listing pages through a tenant's visible documents by id, optionally of one status. Deleted documents are never
-- listed, so the indexes leave them out (queries repeat `NOT deleted` to use them).
CREATE INDEX read_documents_by_tenant_status ON read_documents (generation, tenant_id, status, document_id)
    WHERE NOT deleted;
CREATE INDEX read_documents_by_tenant ON read_documents (generation, tenant_id, document_id) WHERE NOT deleted;

CREATE TABLE read_chunks (
    generation  integer NOT NULL CHECK (generation > 0),
    document_id uuid    NOT NULL,
    chunk_index integer NOT NULL CHECK (chunk_index >= 0),
    text        text    NOT NULL,
    byte_start  bigint  NOT NULL CHECK (byte_start >= 0),
    byte_end    bigint  NOT NULL,
    PRIMARY KEY (generation, document_id, chunk_index)
);
