-- Is the model's HNSW index there and valid, and what row count did its last build record?
-- (geoloc.retrieval.index keeps "geoloc rows=N" in the index comment to notice bulk deletes.)
SELECT x.indisvalid AS valid, obj_description(x.indexrelid, 'pg_class') AS comment
FROM pg_index AS x
WHERE x.indexrelid = to_regclass(:name);
