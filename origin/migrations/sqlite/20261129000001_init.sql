-- Floe catalog schema (SQLite). TEXT compares bytewise, as on PostgreSQL with COLLATE "C".
CREATE TABLE warehouses (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    location    TEXT NOT NULL,
    properties  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE namespaces (
    id            TEXT PRIMARY KEY,
    warehouse_id  TEXT NOT NULL REFERENCES warehouses (id),
    name          TEXT NOT NULL,
    parent_id     TEXT REFERENCES namespaces (id),
    properties    TEXT NOT NULL,
    version       INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    UNIQUE (warehouse_id, name)
);
CREATE INDEX namespaces_children ON namespaces (warehouse_id, parent_id, name);

-- The full document is the last column and the small snapshots=refs one comes
-- before it: SQLite reads a row front to back, so no other column read walks
-- the large document's overflow pages.
CREATE TABLE tables (
    id                 TEXT PRIMARY KEY,
    namespace_id       TEXT NOT NULL REFERENCES namespaces (id),
    name               TEXT NOT NULL,
    metadata_location  TEXT NOT NULL,
    metadata_refs      TEXT,
    version            INTEGER NOT NULL,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    metadata           TEXT NOT NULL,
    UNIQUE (namespace_id, name)
);
