-- One level's cell heads of a model from parallel arrays (weights as pgvector text).
INSERT INTO model_cells (model_id, cell_id, weight, bias)
SELECT %(model_id)s, h.cell_id, h.weight::vector, h.bias
FROM unnest(%(cell_id)s::integer[], %(weight)s::text[], %(bias)s::float8[]) AS h(cell_id, weight, bias);
