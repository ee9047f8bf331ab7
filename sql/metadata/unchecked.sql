-- The next grid points of an area that have no metadata answer yet, in id order after :after_id
-- (keyset paging: points in flight are never handed out twice). :spacing NULL = every grid of the area.
SELECT g.id, ST_Y(g.geom) AS lat, ST_X(g.geom) AS lng
FROM grid_points AS g
WHERE g.area_id = :area_id
  AND (CAST(:spacing AS double precision) IS NULL OR g.spacing_m = :spacing)
  AND g.id > :after_id
  AND NOT EXISTS (SELECT 1 FROM metadata_answers AS m WHERE m.grid_point_id = g.id)
ORDER BY g.id
LIMIT :batch;
