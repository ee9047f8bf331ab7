-- Staging table for one import run: filled with COPY, then moved into images in the same transaction.
-- Its columns are copied from images, so their types (and limits) are defined only once.
CREATE TEMP TABLE image_staging ON COMMIT DROP AS
SELECT location_id, heading, time_index, capture_month, scraped_at, root, path, sha256,
       bytes, width, height, split, version, source
FROM images
WITH NO DATA;
