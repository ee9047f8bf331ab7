-- One panorama per PanoID (many rows may share one); an already known panorama is left as it is.
INSERT INTO panoramas (pano_id, geom, capture_month, copyright)
SELECT DISTINCT ON (pano_id)
       pano_id, ST_SetSRID(ST_MakePoint(lng, lat), 4326), capture_month, copyright
FROM csv_locations
ORDER BY pano_id, id
ON CONFLICT (pano_id) DO NOTHING;
