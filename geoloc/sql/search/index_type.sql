-- The definition of the model's valid HNSW index (no row: none), to read the type it casts to.
SELECT pg_get_indexdef(x.indexrelid) AS definition
FROM pg_index AS x
WHERE x.indexrelid = to_regclass(:name) AND x.indisvalid;
