-- Views live beside tables in one name space per namespace: a table and a
-- view can never share a name, whoever creates first (UNIQUE below). kind is
-- 'table' or 'view'. SQLite cannot add a column before another, and a column
-- after the full document would walk its overflow pages, so the table is
-- rebuilt with kind up front.
CREATE TABLE catalog_objects (
    id                 TEXT PRIMARY KEY,
    namespace_id       TEXT NOT NULL REFERENCES namespaces (id),
    name               TEXT NOT NULL,
    kind               TEXT NOT NULL DEFAULT 'table' CHECK (kind IN ('table', 'view')),
    metadata_location  TEXT NOT NULL,
    metadata_refs      TEXT,
    version            INTEGER NOT NULL,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    metadata           TEXT NOT NULL,
    UNIQUE (namespace_id, name)
);
INSERT INTO catalog_objects
    (id, namespace_id, name, kind, metadata_location, metadata_refs, version, created_at,
     updated_at, metadata)
SELECT id, namespace_id, name, 'table', metadata_location, metadata_refs, version, created_at,
       updated_at, metadata
FROM tables;
DROP TABLE tables;
ALTER TABLE catalog_objects RENAME TO tables;
CREATE INDEX tables_by_kind ON tables (namespace_id, kind, name);
