-- v_locations: the selected locations with their split, buffer, panorama date and distance to the
-- origin, for analysts and QGIS (unique id column: id, the location id used in image file names).
CREATE OR REPLACE VIEW v_locations AS
SELECT l.id,
       l.split,
       l.buffer_m,
       l.order_no,
       l.source,
       l.pano_id,
       p.capture_month,
       to_char(p.capture_month, 'YYYY-MM') AS pano_date,
       round(l.dist_to_origin_m::numeric, 1) AS dist_to_origin_m,
       l.grid_idx,
       (SELECT count(*) FROM images AS i WHERE i.location_id = l.id) AS images,
       l.geom
FROM locations AS l
LEFT JOIN panoramas AS p ON p.pano_id = l.pano_id;
