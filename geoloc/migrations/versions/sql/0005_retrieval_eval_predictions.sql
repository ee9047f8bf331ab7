-- v_eval_predictions: every evaluated query with where it was predicted to be, for QGIS.
-- geom is the line from the query's true location to the best match's location (SRID 4326); the
-- consensus line and both points are there too. Unique id column: id (the prediction's id).
-- Filter by run_id (or model/split) in QGIS; error_m is metres in SWEREF99 TM (EPSG:3006).
CREATE OR REPLACE VIEW v_eval_predictions AS
SELECT p.id,
       p.run_id,
       r.created_at AS run_at,
       m.name AS model,
       r.method,
       r.split,
       r.version,
       p.query_image_id,
       qi.location_id AS query_location_id,
       qi.heading AS query_heading,
       p.top1_location_id AS predicted_location_id,
       round(p.top1_error_m::numeric, 1) AS error_m,
       p.top1_error_m <= 25 AS correct,
       p.first_correct_rank,
       p.consensus_location_id,
       round(p.consensus_error_m::numeric, 1) AS consensus_error_m,
       p.query_geom::geometry(Point, 4326) AS query_geom,
       p.top1_geom::geometry(Point, 4326) AS predicted_geom,
       p.consensus_geom::geometry(Point, 4326) AS consensus_geom,
       ST_MakeLine(p.query_geom, p.top1_geom)::geometry(LineString, 4326) AS geom,
       ST_MakeLine(p.query_geom, p.consensus_geom)::geometry(LineString, 4326) AS consensus_line
FROM eval_predictions AS p
JOIN eval_runs AS r ON r.id = p.run_id
LEFT JOIN models AS m ON m.id = r.model_id
JOIN images AS qi ON qi.id = p.query_image_id;
