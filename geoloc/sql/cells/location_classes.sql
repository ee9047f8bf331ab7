-- Each location's class (cell class index) on each level of a partitioning.
SELECT lc.location_id, lc.level, c.class_index
FROM location_cells AS lc
JOIN cells AS c ON c.id = lc.cell_id
WHERE lc.partition_id = :partition_id;
