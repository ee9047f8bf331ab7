-- Which cell of one level each location falls in (parallel arrays).
INSERT INTO location_cells (partition_id, level, location_id, cell_id)
SELECT :partition_id, :level, a.location_id, a.cell_id
FROM unnest(CAST(:location_id AS integer[]), CAST(:cell_id AS integer[])) AS a(location_id, cell_id);
