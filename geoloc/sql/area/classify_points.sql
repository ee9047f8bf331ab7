-- Every grid point of an area against the staged polygon (area_new), into temp table area_points:
--   inside    the point lies in the new polygon (as grid/stage.sql decides it)
--   answered  it has a (paid) Street View metadata answer
--   new_idx   its idx in the new polygon's grid frame (see grid/frame.sql), NULL when its cell lies
--             outside that frame. The frame is the polygon's bounding box, so a new polygon shifts it:
--             an old point (row r, col c) falls in new cell (r + dr, c + dc) with the same shift for all
--             points of a spacing, so the kept points map one to one onto new cells and a later
--             `ingest grid` only fills the cells that have no point. Points already detached from the
--             frame (negative idx) keep their idx.
CREATE TEMP TABLE area_points ON COMMIT DROP AS
WITH boxes AS MATERIALIZED (
    SELECT ST_Transform(a.geom, 3006)::box2d::geometry AS old_box,
           ST_Transform(n.geom, 3006)::box2d::geometry AS new_box
    FROM areas AS a, area_new AS n
    WHERE a.id = :area_id
), frames AS MATERIALIZED (
    SELECT s.spacing_m,
           ceil((ST_XMax(b.old_box) - ST_XMin(b.old_box)) / s.spacing_m)::bigint AS old_ncols,
           ceil((ST_XMax(b.new_box) - ST_XMin(b.new_box)) / s.spacing_m)::bigint AS new_ncols,
           ceil((ST_YMax(b.new_box) - ST_YMin(b.new_box)) / s.spacing_m)::bigint AS new_nrows,
           floor(0.5 - (ST_XMin(b.new_box) - ST_XMin(b.old_box)) / s.spacing_m)::bigint AS dc,
           floor(0.5 - (ST_YMax(b.old_box) - ST_YMax(b.new_box)) / s.spacing_m)::bigint AS dr
    FROM boxes AS b,
         (SELECT DISTINCT spacing_m FROM grid_points WHERE area_id = :area_id) AS s
), pieces AS MATERIALIZED (
    SELECT piece, ST_Expand(ST_Transform(piece, 4326), 1e-6) AS bbox_4326
    FROM (SELECT ST_Subdivide(ST_Transform(geom, 3006), 64) AS piece FROM area_new) AS s
), inside AS MATERIALIZED (
    -- the test of grid/stage.sql (in EPSG:3006), within 1 cm for the round trip through WGS84
    SELECT DISTINCT g.id
    FROM pieces AS p
    JOIN grid_points AS g ON g.area_id = :area_id AND g.geom && p.bbox_4326
                         AND ST_DWithin(p.piece, ST_Transform(g.geom, 3006), 0.01)
)
SELECT g.id, g.spacing_m, g.idx,
       i.id IS NOT NULL AS inside,
       EXISTS (SELECT 1 FROM metadata_answers AS m WHERE m.grid_point_id = g.id) AS answered,
       CASE WHEN g.idx < 0 THEN g.idx
            WHEN cell.c BETWEEN 0 AND f.new_ncols - 1 AND cell.r BETWEEN 0 AND f.new_nrows - 1
            THEN cell.r * f.new_ncols + cell.c
       END AS new_idx
FROM grid_points AS g
JOIN frames AS f ON f.spacing_m = g.spacing_m
LEFT JOIN inside AS i ON i.id = g.id
CROSS JOIN LATERAL (SELECT g.idx / f.old_ncols + f.dr AS r, g.idx % f.old_ncols + f.dc AS c) AS cell
WHERE g.area_id = :area_id;
