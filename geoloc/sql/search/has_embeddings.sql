-- Does the model have any embedding at all? (search needs some; cheap thanks to the primary key)
SELECT EXISTS (SELECT 1 FROM embeddings WHERE model_id = :model_id) AS found;
