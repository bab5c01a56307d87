-- HTTP idempotency: the response to the first successful command sent under each (tenant, Idempotency-Key), so a
-- retry with the same key and the same request gets the same response, also after a restart. `fingerprint` is the
-- SHA-256 of the normalised request (route, parsed body, preconditions); another request under the key is refused.
CREATE TABLE api_idempotency (
    tenant_id   TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    fingerprint BLOB    NOT NULL CHECK (length(fingerprint) = 32),
    status      INTEGER NOT NULL CHECK (status BETWEEN 100 AND 599),
    headers     TEXT    NOT NULL, -- JSON array of [name, value] pairs
    body        BLOB    NOT NULL,
    created_at  INTEGER NOT NULL, -- microseconds since the Unix epoch
    PRIMARY KEY (tenant_id, key)
) WITHOUT ROWID;
