-- How far the metadata check of an area is: grid points in total, already answered, and unanswered
-- ones that a live worker (any machine) has claimed right now.
SELECT count(*) AS total,
       count(m.grid_point_id) AS checked,
       count(*) FILTER (WHERE m.grid_point_id IS NULL AND EXISTS (
           SELECT 1 FROM metadata_claims AS c JOIN pg_stat_activity AS a ON a.pid = c.pid
           WHERE c.grid_point_id = g.id AND (a.backend_start IS NULL OR a.backend_start <= c.claimed_at)))
           AS claimed
FROM grid_points AS g
LEFT JOIN metadata_answers AS m ON m.grid_point_id = g.id
WHERE g.area_id = :area_id
  AND (CAST(:spacing AS double precision) IS NULL OR g.spacing_m = :spacing);
