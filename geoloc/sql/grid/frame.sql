-- The frame of an area's grid: its bounding box in SWEREF99 TM (EPSG:3006, true metres) and how
-- many columns/rows of :spacing metres cover it. Point (row r, col c) lies at the centre of its cell:
--   x = xmin + (c + 0.5) * spacing,   y = ymax - (r + 0.5) * spacing
-- and its stable index is idx = r * ncols + c (row-major from the north-west corner).
SELECT a.id AS area_id,
       ST_XMin(b) AS xmin, ST_YMax(b) AS ymax,
       ceil((ST_XMax(b) - ST_XMin(b)) / :spacing)::bigint AS ncols,
       ceil((ST_YMax(b) - ST_YMin(b)) / :spacing)::bigint AS nrows
FROM areas AS a,
     LATERAL (SELECT ST_Transform(a.geom, 3006)::box2d::geometry AS b) AS t
WHERE a.name = :area;
