-- The greedy buffer selection of the original project, as a session-local function (pg_temp):
--   candidates = all panoramas, ordered by distance to the origin (geodesic metres on WGS84, as
--   the CSVs' dist_to_start_point; ties by pano_id);
--   for each buffer in the given order, keep a candidate only if no location kept so far (by this
--   buffer or by any earlier one) lies within this buffer's distance, in SWEREF99 TM (EPSG:3006).
-- quad_segs = 0 tests the exact circle (ST_DWithin): no two kept points are closer than the buffer.
-- quad_segs = 16 tests the polygon that shapely's default buffer() draws (64 sides, inscribed radius
-- 0.12 % short of the buffer), as the original did: this reproduces the six CSVs exactly.
-- The kept points sit in a temp table with a GiST index, so each test is one index probe:
-- seconds for tens of thousands of candidates. Analysts can run this file in psql and then:
--   SELECT * FROM pg_temp.geoloc_select_buffers(59.32493573672165, 18.069355309000265,
--                                                ARRAY[100, 75, 60, 50, 45, 35], 16);
CREATE OR REPLACE FUNCTION pg_temp.geoloc_select_buffers(origin_lat double precision,
                                                          origin_lng double precision,
                                                          buffers double precision[],
                                                          quad_segs integer DEFAULT 0)
RETURNS TABLE (buffer_m double precision, order_no integer, pano_id text, dist_to_origin_m double precision)
LANGUAGE plpgsql
SET enable_seqscan = off  -- the kept table starts empty: make the cached plan use its GiST index
SET jit = off  -- seqscan=off inflates the cost estimates and JIT compiling would take longer than the work
AS $$
#variable_conflict use_column
DECLARE
    origin geography := ST_SetSRID(ST_MakePoint(origin_lng, origin_lat), 4326)::geography;
    style text := 'quad_segs=' || greatest(quad_segs, 1);
    -- a point this close is inside the polygon for sure (its inscribed circle): no ST_Buffer needed
    inscribed double precision := cos(pi() / (4 * greatest(quad_segs, 1)));
    b double precision;
    n integer;
    c record;
BEGIN
    DROP TABLE IF EXISTS pg_temp.buffer_candidates, pg_temp.buffer_kept;
    CREATE TEMP TABLE buffer_candidates AS
        SELECT p.pano_id, ST_Transform(p.geom, 3006) AS g, ST_Distance(p.geom::geography, origin) AS d
        FROM panoramas AS p;
    CREATE TEMP TABLE buffer_kept (buffer_m double precision, order_no integer, pano_id text,
                                   g geometry, d double precision);
    CREATE INDEX ON buffer_kept USING gist (g);
    FOREACH b IN ARRAY buffers LOOP
        n := 0;
        -- candidates too close to a location of an earlier buffer drop out in one set-based pass;
        -- the loop then only has to settle conflicts within this buffer
        FOR c IN SELECT * FROM buffer_candidates AS x
                 WHERE NOT EXISTS (SELECT 1 FROM buffer_kept AS k
                                   WHERE ST_DWithin(k.g, x.g, b)
                                     AND (quad_segs <= 0 OR ST_DWithin(k.g, x.g, b * inscribed - 1e-6)
                                          OR ST_Intersects(ST_Buffer(k.g, b, style), x.g)))
                 ORDER BY d, pano_id LOOP
            IF NOT EXISTS (SELECT 1 FROM buffer_kept AS k
                           WHERE ST_DWithin(k.g, c.g, b)
                             AND (quad_segs <= 0 OR ST_DWithin(k.g, c.g, b * inscribed - 1e-6)
                                  OR ST_Intersects(ST_Buffer(k.g, b, style), c.g))) THEN
                INSERT INTO buffer_kept VALUES (b, n, c.pano_id, c.g, c.d);
                n := n + 1;
            END IF;
        END LOOP;
    END LOOP;
    RETURN QUERY
        SELECT k.buffer_m, k.order_no, k.pano_id, k.d
        FROM buffer_kept AS k
        ORDER BY array_position(buffers, k.buffer_m), k.order_no;
END
$$;
