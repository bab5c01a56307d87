-- Recorded command responses are kept for IDEMPOTENCY_RETENTION_HOURS: the periodic purge finds the expired ones by
-- age, in small batches, without scanning the whole table.
CREATE INDEX api_idempotency_created_at ON api_idempotency (created_at);
