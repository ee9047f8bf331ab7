-- Per-model HNSW indexes on embeddings (and leftovers of their builds) whose model no longer exists.
SELECT c.relname AS name, m.id::integer AS model_id
FROM pg_index AS x
JOIN pg_class AS c ON c.oid = x.indexrelid
CROSS JOIN LATERAL (SELECT substring(c.relname FROM '^' || :prefix || '([0-9]+)')::bigint AS id) AS m
WHERE x.indrelid = 'embeddings'::regclass
  AND m.id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM models WHERE models.id = m.id);
