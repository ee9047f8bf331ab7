-- Merge a staged chunk, its vectors cast to the table's halfvec (16-bit floats); rows another run
-- stored meanwhile are kept (a rerun never duplicates).
INSERT INTO embeddings (model_id, image_id, embedding)
SELECT :model_id, image_id, embedding::halfvec
FROM embedding_staging
ON CONFLICT (model_id, image_id) DO NOTHING;
