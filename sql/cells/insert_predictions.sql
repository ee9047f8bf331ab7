-- Every query's prediction of a cells or hybrid run, from parallel arrays: the predicted points are
-- given (a cell centroid is no location), the query's point is its location's.
INSERT INTO eval_predictions (run_id, query_image_id, query_geom, top1_location_id, top1_geom, top1_error_m,
                              consensus_location_id, consensus_geom, consensus_error_m, first_correct_rank)
SELECT %(run_id)s, p.query_image_id, ql.geom, p.top1_location_id,
       ST_SetSRID(ST_MakePoint(p.top1_lng, p.top1_lat), 4326), p.top1_error_m,
       p.consensus_location_id,
       CASE WHEN p.consensus_lat IS NOT NULL
            THEN ST_SetSRID(ST_MakePoint(p.consensus_lng, p.consensus_lat), 4326) END,
       p.consensus_error_m, p.first_correct_rank
FROM unnest(%(query_image_id)s::bigint[], %(top1_location_id)s::integer[], %(top1_lat)s::float8[],
            %(top1_lng)s::float8[], %(top1_error_m)s::float8[], %(consensus_location_id)s::integer[],
            %(consensus_lat)s::float8[], %(consensus_lng)s::float8[], %(consensus_error_m)s::float8[],
            %(first_correct_rank)s::integer[])
     AS p(query_image_id, top1_location_id, top1_lat, top1_lng, top1_error_m, consensus_location_id,
          consensus_lat, consensus_lng, consensus_error_m, first_correct_rank)
JOIN images AS qi ON qi.id = p.query_image_id
JOIN locations AS ql ON ql.id = qi.location_id;
