SELECT EXISTS (SELECT 1 FROM model_cells WHERE model_id = CAST(:model_id AS integer)) AS found;
