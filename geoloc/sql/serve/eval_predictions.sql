-- `geoloc serve`: every query of one evaluation run as a line from its true location to the best
-- match's (GeoJSON from v_eval_predictions), worst first; queries without a prediction come last.
SELECT p.id, p.query_image_id, p.query_location_id, p.query_heading, p.predicted_location_id,
       p.error_m::float AS error_m, p.correct, p.first_correct_rank, p.consensus_location_id,
       p.consensus_error_m::float AS consensus_error_m,
       ST_AsGeoJSON(coalesce(p.geom, p.query_geom), 7) AS geometry
FROM v_eval_predictions AS p
WHERE p.run_id = :run_id
ORDER BY p.error_m DESC NULLS LAST, p.id;
