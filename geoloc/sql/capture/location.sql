-- What a capture backend needs to know about a location: where it is and its default panorama.
SELECT l.id, ST_Y(l.geom) AS lat, ST_X(l.geom) AS lng, l.pano_id, p.capture_month, l.split
FROM locations AS l
LEFT JOIN panoramas AS p ON p.pano_id = l.pano_id
WHERE l.id = :id;
