-- CSV rows whose id is already taken by a different location (another panorama, buffer or order):
-- importing them would silently rewrite history, so the importer refuses.
SELECT s.id, s.pano_id AS csv_pano_id, l.pano_id AS stored_pano_id, l.source
FROM csv_locations AS s
JOIN locations AS l ON l.id = s.id
WHERE l.pano_id IS DISTINCT FROM s.pano_id
   OR l.buffer_m <> s.buffer_m
   OR l.order_no <> s.order_no
ORDER BY s.id
LIMIT 5;
