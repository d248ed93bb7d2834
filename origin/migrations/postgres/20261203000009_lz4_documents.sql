-- Every commit rewrites a table's metadata documents, which PostgreSQL
-- compresses when it stores them out of line (TOAST). Its default method,
-- pglz, was the database's hottest function in a profile of commits
-- (BENCHMARKS.md, group commit); lz4 compresses several times faster at a
-- similar ratio. Only values written from now on use it; a server built
-- without lz4 keeps its default (the statements run through EXECUTE so that
-- any refusal is caught here).
DO $$
BEGIN
    EXECUTE 'ALTER TABLE tables ALTER COLUMN metadata SET COMPRESSION lz4';
    EXECUTE 'ALTER TABLE tables ALTER COLUMN metadata_refs SET COMPRESSION lz4';
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'metadata documents keep the default compression: %', SQLERRM;
END
$$;
