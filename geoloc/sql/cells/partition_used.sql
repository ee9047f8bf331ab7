-- How many models have cell heads on a partition's cells.
SELECT count(DISTINCT h.model_id)
FROM model_cells AS h
JOIN cells AS c ON c.id = h.cell_id
WHERE c.partition_id = :partition_id;
