-- Idempotency-Key claims survive the death of the origin that made them.
--
-- owner is the origin process (origin_instances.id) running the claimed
-- request; NULL once it gave up without a final outcome. Each serving origin
-- writes its seen_at every second, so a claim whose owner has not been seen
-- for a few seconds belongs to a process that died.
--
-- applied is written in the same database transaction as the request's
-- effect (the commit's compare-and-set, the row it inserts or deletes): the
-- metadata location it produced, or '' for an effect without one. A request
-- that takes over an abandoned claim answers from it instead of running
-- again, so a keyed write is applied at most once, and acknowledged once.
ALTER TABLE idempotency_keys ADD COLUMN owner TEXT;
ALTER TABLE idempotency_keys ADD COLUMN applied TEXT;

CREATE TABLE origin_instances (
    id       TEXT PRIMARY KEY,
    seen_at  BIGINT NOT NULL
);
