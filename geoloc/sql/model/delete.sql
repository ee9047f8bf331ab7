-- Delete a model; its embeddings and evaluations go with it (ON DELETE CASCADE).
DELETE FROM models WHERE name = :name;
