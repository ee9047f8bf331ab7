-- The definition of the model's valid HNSW index (NULL row: none), to read the type it casts to.
SELECT pg_get_indexdef(x.indexrelid)
FROM pg_index AS x
WHERE x.indexrelid = to_regclass(%(name)s) AND x.indisvalid;
