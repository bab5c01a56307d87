-- An append's events share one metadata text. Only the append's first event stores it; each later event of the same
-- append stores NULL, meaning "the same as the event before it" (position - 1, which is also version - 1 of the same
-- stream). That saves about a third of every row and of its WAL for multi-event appends. The hash of every event
-- still covers its full metadata, so `dossier verify` catches a NULL placed where the metadata differed.
-- To query it with SQL, carry the last non-NULL value forward in position order.
ALTER TABLE events ALTER COLUMN metadata DROP NOT NULL;
