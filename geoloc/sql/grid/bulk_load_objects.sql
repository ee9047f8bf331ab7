-- What PostgreSQL's "Populating a Database" advice says to drop before a bulk load and restore
-- after: the GiST indexes (one sorted build instead of an insertion per point) and the foreign key
-- to areas (one validating join instead of a trigger call per row). For 290,000 points this turns
-- about ten seconds into two. kind: 'index' (restore = CREATE INDEX ...) or 'constraint'
-- (restore = ALTER TABLE grid_points ADD CONSTRAINT name ...).
SELECT 'index' AS kind, c.relname AS name, pg_get_indexdef(i.indexrelid) AS definition
FROM pg_index AS i
JOIN pg_class AS c ON c.oid = i.indexrelid
JOIN pg_am AS am ON am.oid = c.relam
WHERE i.indrelid = 'grid_points'::regclass AND am.amname = 'gist'
UNION ALL
SELECT 'constraint', conname, pg_get_constraintdef(oid)
FROM pg_constraint
WHERE conrelid = 'grid_points'::regclass AND contype = 'f' AND confrelid = 'areas'::regclass;
