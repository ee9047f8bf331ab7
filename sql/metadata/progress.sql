-- How far the metadata check of an area is: grid points in total and already answered.
SELECT count(*) AS total, count(m.grid_point_id) AS checked
FROM grid_points AS g
LEFT JOIN metadata_answers AS m ON m.grid_point_id = g.id
WHERE g.area_id = :area_id
  AND (CAST(:spacing AS double precision) IS NULL OR g.spacing_m = :spacing);
