-- Move staged rows into images; a path already present is left alone, so re-importing adds nothing.
INSERT INTO images (location_id, heading, time_index, capture_month, scraped_at, root, path, sha256,
                    bytes, width, height, split, version, source)
SELECT location_id, heading, time_index, capture_month, scraped_at, root, path, sha256,
       bytes, width, height, split, version, source
FROM image_staging
ORDER BY path
ON CONFLICT (path) DO NOTHING
RETURNING location_id, split, version;
