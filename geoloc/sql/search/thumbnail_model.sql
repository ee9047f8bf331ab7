-- The thumbnail baseline as a pseudo-model, so its vectors share the embeddings table, the index and
-- the search/evaluation SQL with real models. Created once; returns the row.
INSERT INTO models (name, backbone, dim, input_size, hyperparams, status)
VALUES (:name, 'thumbnail', :dim, :size, CAST(:hyperparams AS jsonb), 'ready')
ON CONFLICT (name) DO NOTHING;
