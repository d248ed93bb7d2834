-- Storage confinement: each table's and view's location, normalized
-- (storage::StoragePath::key: scheme, bucket, decoded segments, a trailing
-- slash), so that one location contains another exactly when its key is a
-- prefix of the other's. No live location may contain another. Rows written
-- before this column existed are filled in at start-up (Store::migrate).
ALTER TABLE tables ADD COLUMN location_key TEXT COLLATE "C";
CREATE INDEX tables_location ON tables (location_key);

-- Statements that claim a location first update this row, so two of them
-- never both find the same place free.
CREATE TABLE locks (
    name   TEXT PRIMARY KEY,
    taken  BIGINT NOT NULL
);
INSERT INTO locks (name, taken) VALUES ('locations', 0);
