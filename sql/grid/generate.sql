-- Lay the regular grid of :spacing metres over area :area_id and store the points inside it.
-- The polygon is cut into small pieces (ST_Subdivide) and each piece only generates the grid
-- cells of its own bounding box, so each point is tested against a few dozen vertices instead of
-- the whole area: ~290,000 points of Stockholm at 10 m take seconds. A point on the border of two
-- pieces comes out twice, hence DISTINCT; re-running adds nothing (ON CONFLICT DO NOTHING).
-- Parameters: :area_id, :spacing, and the frame from grid/frame.sql (:xmin, :ymax, :ncols).
WITH pieces AS (
    SELECT ST_Subdivide(ST_Transform(geom, 3006), 64) AS piece
    FROM areas WHERE id = :area_id
), cells AS (
    SELECT DISTINCT r.r * :ncols + c.c AS idx,
           :xmin + (c.c + 0.5) * :spacing AS x,
           :ymax - (r.r + 0.5) * :spacing AS y
    FROM pieces AS p
    CROSS JOIN LATERAL generate_series(
        ceil((ST_XMin(p.piece) - :xmin) / :spacing - 0.5)::bigint,
        floor((ST_XMax(p.piece) - :xmin) / :spacing - 0.5)::bigint) AS c(c)
    CROSS JOIN LATERAL generate_series(
        ceil((:ymax - ST_YMax(p.piece)) / :spacing - 0.5)::bigint,
        floor((:ymax - ST_YMin(p.piece)) / :spacing - 0.5)::bigint) AS r(r)
    WHERE ST_Intersects(p.piece, ST_SetSRID(ST_MakePoint(:xmin + (c.c + 0.5) * :spacing,
                                                          :ymax - (r.r + 0.5) * :spacing), 3006))
)
INSERT INTO grid_points (area_id, spacing_m, idx, geom)
SELECT :area_id, :spacing, idx, ST_Transform(ST_SetSRID(ST_MakePoint(x, y), 3006), 4326)
FROM cells
ORDER BY idx
ON CONFLICT (area_id, spacing_m, idx) DO NOTHING;
