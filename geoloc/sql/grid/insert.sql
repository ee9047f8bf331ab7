-- Store the staged grid points (grid/stage.sql, already without the stored ones) in WGS84.
-- No ON CONFLICT: grid runs hold a SHARE ROW EXCLUSIVE lock on grid_points (one run at a time,
-- readers unaffected), so the staged set is exact, and a plain INSERT is twice as fast.
INSERT INTO grid_points (area_id, spacing_m, idx, geom)
SELECT :area_id, :spacing, idx, ST_Transform(ST_SetSRID(ST_MakePoint(x, y), 3006), 4326)
FROM grid_cells
ORDER BY idx;
