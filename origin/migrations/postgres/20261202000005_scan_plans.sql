-- Server-side scan plans: a row per plan (status submitted, completed,
-- failed or cancelled) and its result in pages of file scan tasks, each
-- fetched through one plan task. Plans expire after catalog.plan_ttl_seconds.
CREATE TABLE scan_plans (
    id          TEXT PRIMARY KEY,
    table_id    TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('submitted', 'completed', 'failed', 'cancelled')),
    error       TEXT,
    pages       BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX scan_plans_expiry ON scan_plans (expires_at);

CREATE TABLE scan_plan_pages (
    plan_id  TEXT NOT NULL REFERENCES scan_plans (id) ON DELETE CASCADE,
    page     BIGINT NOT NULL,
    body     TEXT NOT NULL,
    PRIMARY KEY (plan_id, page)
);
