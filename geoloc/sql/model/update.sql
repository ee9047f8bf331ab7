-- Update a registered model; a NULL parameter leaves its column as it is.
UPDATE models
SET hyperparams    = COALESCE(CAST(:hyperparams AS jsonb), hyperparams),
    input_size     = COALESCE(CAST(:input_size AS integer), input_size),
    data_counts    = COALESCE(CAST(:data_counts AS jsonb), data_counts),
    weights_path   = COALESCE(:weights_path, weights_path),
    weights_sha256 = COALESCE(:weights_sha256, weights_sha256),
    train_seconds  = COALESCE(:train_seconds, train_seconds),
    history        = COALESCE(CAST(:history AS jsonb), history),
    metrics        = COALESCE(CAST(:metrics AS jsonb), metrics),
    status         = COALESCE(:status, status),
    updated_at     = now()
WHERE name = :name
RETURNING *;
