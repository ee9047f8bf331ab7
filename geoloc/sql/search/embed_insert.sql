-- Merge a staged chunk; rows another run stored meanwhile are kept (a rerun never duplicates).
INSERT INTO embeddings (model_id, image_id, embedding)
SELECT :model_id, image_id, embedding
FROM embedding_staging
ON CONFLICT (model_id, image_id) DO NOTHING;
