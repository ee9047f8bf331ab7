-- v_images: one row per image with its location's point, for QGIS (unique id column: id).
-- file = root || '/' || path is the image on disk (e.g. for an HTML action or a photo preview).
CREATE OR REPLACE VIEW v_images AS
SELECT i.id,
       i.location_id,
       i.heading,
       i.time_index,
       i.capture_month,
       to_char(i.capture_month, 'FMMonth YYYY') AS month_label,
       i.scraped_at,
       i.split,
       i.version,
       i.is_query,
       i.source,
       i.width,
       i.height,
       i.root || '/' || i.path AS file,
       l.geom
FROM images AS i
JOIN locations AS l ON l.id = i.location_id;
