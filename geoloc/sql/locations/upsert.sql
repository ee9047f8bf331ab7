-- Merge the staged CSV rows into locations. Ids come from the CSV (new_order_idx), so a re-import
-- adds nothing; only a changed split assignment is written. Returns one row per inserted/updated row.
INSERT INTO locations (id, pano_id, grid_idx, grid_geom, geom, buffer_m, order_no,
                       dist_to_origin_m, split, source)
SELECT id, pano_id, grid_idx,
       CASE WHEN grid_lat IS NULL THEN NULL ELSE ST_SetSRID(ST_MakePoint(grid_lng, grid_lat), 4326) END,
       ST_SetSRID(ST_MakePoint(lng, lat), 4326),
       buffer_m, order_no, dist_to_origin_m, split, 'csv'
FROM csv_locations
ORDER BY id
ON CONFLICT (id) DO UPDATE SET split = EXCLUDED.split
    WHERE locations.split IS DISTINCT FROM EXCLUDED.split
RETURNING (xmax = 0) AS inserted;
