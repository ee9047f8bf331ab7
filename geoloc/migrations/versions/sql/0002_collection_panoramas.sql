-- v_panoramas: each known panorama with how many grid points snapped to it and how many
-- locations use it (unique id column: id, a stable number in pano_id order; pano_id is unique too).
CREATE OR REPLACE VIEW v_panoramas AS
SELECT row_number() OVER (ORDER BY p.pano_id) AS id,
       p.pano_id,
       p.capture_month,
       to_char(p.capture_month, 'YYYY-MM') AS date,
       p.copyright,
       (SELECT count(*) FROM metadata_answers AS m WHERE m.pano_id = p.pano_id) AS grid_points,
       (SELECT count(*) FROM locations AS l WHERE l.pano_id = p.pano_id) AS locations,
       p.first_seen_at,
       p.geom
FROM panoramas AS p;
