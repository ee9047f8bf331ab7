-- What replacing the polygon does to the area's grid points (from area/classify_points.sql).
SELECT count(*) AS points,
       count(*) FILTER (WHERE answered) AS answered,
       count(*) FILTER (WHERE NOT inside AND NOT answered) AS outside_unanswered,
       count(*) FILTER (WHERE NOT inside AND answered) AS outside_answered,
       max(new_idx) AS max_idx,
       coalesce(array_agg(DISTINCT spacing_m ORDER BY spacing_m), '{}') AS spacings
FROM area_points;
