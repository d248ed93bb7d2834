-- Outcomes of requests that carried an Idempotency-Key: a row is claimed
-- (done = 0) before the request runs and holds the final status and body
-- (done = 1) after; 5xx outcomes are not kept.
CREATE TABLE idempotency_keys (
    key          TEXT PRIMARY KEY,
    fingerprint  TEXT NOT NULL,
    done         BIGINT NOT NULL,
    status       BIGINT NOT NULL,
    body         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
