-- The model's HNSW index as the catalog has it (no row: none): is it valid, the definition of a
-- valid one (to read the type it casts to), and its comment, where geoloc.retrieval.index keeps
-- "geoloc rows=N", the model's row count at the last build or update (to notice bulk deletes).
SELECT x.indisvalid AS valid,
       CASE WHEN x.indisvalid THEN pg_get_indexdef(x.indexrelid) END AS definition,
       obj_description(x.indexrelid, 'pg_class') AS comment
FROM pg_index AS x
WHERE x.indexrelid = to_regclass(:name);
