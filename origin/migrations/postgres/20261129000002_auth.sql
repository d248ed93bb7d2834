-- Principals (OAuth2 clients and external OpenID Connect subjects), their
-- grants and API keys. Secrets are stored only as argon2id PHC strings.
CREATE TABLE principals (
    id            TEXT PRIMARY KEY,
    secret_hash   TEXT,
    oidc_subject  TEXT UNIQUE,
    disabled      BIGINT NOT NULL,
    not_before    BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

-- namespace is '' for the whole warehouse, else its levels joined by U+001F.
CREATE TABLE grants (
    principal_id  TEXT NOT NULL REFERENCES principals (id) ON DELETE CASCADE,
    warehouse     TEXT NOT NULL,
    namespace     TEXT NOT NULL,
    role          TEXT NOT NULL,
    PRIMARY KEY (principal_id, warehouse, namespace)
);

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    principal_id  TEXT NOT NULL REFERENCES principals (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    secret_hash   TEXT NOT NULL,
    revoked       BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX api_keys_principal ON api_keys (principal_id);
