-- The points this worker just claimed that still have no answer, with their coordinates, in id
-- order. A new statement sees every answer committed before the claim, so a point another worker
-- answered (answer and claim removal are one transaction) is dropped here, and its claim with it.
WITH answered AS (
    DELETE FROM metadata_claims AS c
    WHERE c.grid_point_id = ANY(CAST(:ids AS bigint[]))
      AND c.worker = :worker
      AND EXISTS (SELECT 1 FROM metadata_answers AS m WHERE m.grid_point_id = c.grid_point_id)
)
SELECT g.id, ST_Y(g.geom) AS lat, ST_X(g.geom) AS lng
FROM grid_points AS g
WHERE g.id = ANY(CAST(:ids AS bigint[]))
  AND NOT EXISTS (SELECT 1 FROM metadata_answers AS m WHERE m.grid_point_id = g.id)
ORDER BY g.id;
