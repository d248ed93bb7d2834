-- Views live beside tables in one name space per namespace: a table and a
-- view can never share a name, whoever creates first (the existing UNIQUE
-- (namespace_id, name)). kind is 'table' or 'view'.
ALTER TABLE tables ADD COLUMN kind TEXT NOT NULL DEFAULT 'table'
    CHECK (kind IN ('table', 'view'));
CREATE INDEX tables_by_kind ON tables (namespace_id, kind, name);
