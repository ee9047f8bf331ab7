SELECT EXISTS (SELECT 1 FROM model_cells WHERE model_id = %(model_id)s::integer);
