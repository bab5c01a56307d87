-- HTTP idempotency: the response to the first successful command sent under each (tenant, Idempotency-Key), so a
-- retry with the same key and the same request gets the same response, also after a restart. `fingerprint` is the
-- SHA-256 of the normalised request (route, parsed body, preconditions); another request under the key is refused.
CREATE TABLE api_idempotency (
    tenant_id   text        COLLATE "C" NOT NULL,
    key         text        COLLATE "C" NOT NULL,
    fingerprint bytea       NOT NULL CHECK (length(fingerprint) = 32),
    status      integer     NOT NULL CHECK (status BETWEEN 100 AND 599),
    headers     text        NOT NULL, -- JSON array of [name, value] pairs
    body        bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);
