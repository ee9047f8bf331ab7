-- v_split_coverage: one row per split ('none' for locations without one): how many locations and
-- images it has, which buffers feed it, how far it reaches, and the area it covers (the convex
-- hull of its locations, grown by 1 m so even one or two points give a polygon).
-- Unique id column: id (1 train, 2 val, 3 test, 0 none).
CREATE OR REPLACE VIEW v_split_coverage AS
SELECT CASE coalesce(l.split, 'none') WHEN 'train' THEN 1 WHEN 'val' THEN 2 WHEN 'test' THEN 3 ELSE 0 END AS id,
       coalesce(l.split, 'none') AS split,
       count(*) AS locations,
       (SELECT count(*) FROM images AS i JOIN locations AS li ON li.id = i.location_id
         WHERE li.split IS NOT DISTINCT FROM l.split) AS images,
       string_agg(DISTINCT l.buffer_m::text, ',') AS buffers_m,
       round(min(l.dist_to_origin_m)::numeric, 1) AS min_dist_to_origin_m,
       round(max(l.dist_to_origin_m)::numeric, 1) AS max_dist_to_origin_m,
       round((ST_Area(ST_ConvexHull(ST_Collect(ST_Transform(l.geom, 3006)))) / 1e6)::numeric, 3) AS hull_km2,
       ST_Transform(ST_Buffer(ST_ConvexHull(ST_Collect(ST_Transform(l.geom, 3006))), 1), 4326)::geometry(Polygon, 4326) AS geom
FROM locations AS l
GROUP BY l.split;
