-- One level's cell heads of a model from parallel arrays (weights as pgvector text).
INSERT INTO model_cells (model_id, cell_id, weight, bias)
SELECT :model_id, h.cell_id, h.weight::vector, h.bias
FROM unnest(CAST(:cell_id AS integer[]), CAST(:weight AS text[]), CAST(:bias AS float8[])) AS h(cell_id, weight, bias);
