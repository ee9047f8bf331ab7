-- Re-indexing the kept grid points into the new frame (area/classify_points.sql), step 1 of 2. The
-- unique (area_id, spacing_m, idx) is checked row by row, so every point that moves first takes the
-- unused value -id; step 2 (area/reindex_attach.sql) then gives the points with a cell in the new
-- frame their idx. The others stay at -id: detached, kept for their answers, outside the new grid.
UPDATE grid_points AS g SET idx = -g.id
FROM area_points AS p
WHERE g.id = p.id AND p.new_idx IS DISTINCT FROM p.idx;
