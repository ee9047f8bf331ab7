-- v_image_locations: how much imagery each location has (one row per location with images),
-- for styling coverage in QGIS (unique id column: location_id).
CREATE OR REPLACE VIEW v_image_locations AS
SELECT l.id AS location_id,
       l.split,
       count(*) AS images,
       count(DISTINCT i.heading) AS headings,
       count(DISTINCT i.time_index) AS dates,
       min(i.capture_month) AS oldest_month,
       max(i.capture_month) AS newest_month,
       string_agg(DISTINCT i.version, ',') AS versions,
       l.geom
FROM locations AS l
JOIN images AS i ON i.location_id = l.id
GROUP BY l.id;
