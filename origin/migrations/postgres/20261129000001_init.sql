-- Floe catalog schema (PostgreSQL). Names compare bytewise (COLLATE "C") so
-- keyset paging orders the same way everywhere.
CREATE TABLE warehouses (
    id          TEXT PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL UNIQUE,
    location    TEXT NOT NULL,
    properties  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE namespaces (
    id            TEXT PRIMARY KEY,
    warehouse_id  TEXT NOT NULL REFERENCES warehouses (id),
    name          TEXT COLLATE "C" NOT NULL,
    parent_id     TEXT REFERENCES namespaces (id),
    properties    TEXT NOT NULL,
    version       BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    UNIQUE (warehouse_id, name)
);
CREATE INDEX namespaces_children ON namespaces (warehouse_id, parent_id, name);

-- The full document is the last column and the small snapshots=refs one comes
-- before it: SQLite reads a row front to back, so no other column read walks
-- the large document's overflow pages.
CREATE TABLE tables (
    id                 TEXT PRIMARY KEY,
    namespace_id       TEXT NOT NULL REFERENCES namespaces (id),
    name               TEXT COLLATE "C" NOT NULL,
    metadata_location  TEXT NOT NULL,
    metadata_refs      TEXT,
    version            BIGINT NOT NULL,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    metadata           TEXT NOT NULL,
    UNIQUE (namespace_id, name)
);
