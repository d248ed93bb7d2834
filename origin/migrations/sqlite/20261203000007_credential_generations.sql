-- Credential generations and the log of principal changes.
--
-- principals.generation is bumped by rotation, disabling and token
-- revocation; every token carries the generation of the record it was minted
-- from and is refused once the record's has moved past it.
--
-- auth_changes lists every change to a principal, its grants or its API
-- keys, whatever process made it (a serving origin, or the CLI). Each origin
-- reads the rows after the last one it saw, once a second, and publishes them
-- as change events to its edges. seq is allocated as MAX(seq) + 1 by the
-- inserting statement itself, so a row is only ever numbered after every row
-- below it has committed: a reader that sees seq n has seen every seq < n.
ALTER TABLE principals ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;

CREATE TABLE auth_changes (
    seq           BIGINT PRIMARY KEY,
    principal_id  TEXT NOT NULL,
    api_key_id    TEXT,
    origin        TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
