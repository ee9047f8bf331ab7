-- Every query's prediction of a cells or hybrid run, from parallel arrays: the predicted points are
-- given (a cell centroid is no location), the query's point is its location's.
INSERT INTO eval_predictions (run_id, query_image_id, query_geom, top1_location_id, top1_geom, top1_error_m,
                              consensus_location_id, consensus_geom, consensus_error_m, first_correct_rank)
SELECT :run_id, p.query_image_id, ql.geom, p.top1_location_id,
       ST_SetSRID(ST_MakePoint(p.top1_lng, p.top1_lat), 4326), p.top1_error_m,
       p.consensus_location_id,
       CASE WHEN p.consensus_lat IS NOT NULL
            THEN ST_SetSRID(ST_MakePoint(p.consensus_lng, p.consensus_lat), 4326) END,
       p.consensus_error_m, p.first_correct_rank
FROM unnest(CAST(:query_image_id AS bigint[]), CAST(:top1_location_id AS integer[]), CAST(:top1_lat AS float8[]),
            CAST(:top1_lng AS float8[]), CAST(:top1_error_m AS float8[]), CAST(:consensus_location_id AS integer[]),
            CAST(:consensus_lat AS float8[]), CAST(:consensus_lng AS float8[]), CAST(:consensus_error_m AS float8[]),
            CAST(:first_correct_rank AS integer[]))
     AS p(query_image_id, top1_location_id, top1_lat, top1_lng, top1_error_m, consensus_location_id,
          consensus_lat, consensus_lng, consensus_error_m, first_correct_rank)
JOIN images AS qi ON qi.id = p.query_image_id
JOIN locations AS ql ON ql.id = qi.location_id;
