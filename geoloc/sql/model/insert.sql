-- Register a model under a unique name (status 'training' while it trains, 'ready' when usable).
INSERT INTO models (name, backbone, dim, input_size, hyperparams, train_split, data_counts,
                    weights_path, weights_sha256, train_seconds, history, metrics, status)
VALUES (:name, :backbone, :dim, :input_size, CAST(:hyperparams AS jsonb), :train_split,
        CAST(:data_counts AS jsonb), :weights_path, :weights_sha256, :train_seconds,
        CAST(:history AS jsonb), CAST(:metrics AS jsonb), :status)
RETURNING *;
