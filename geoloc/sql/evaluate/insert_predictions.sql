-- Every query's prediction of one run, from parallel arrays (one statement for all queries); points
-- are the locations' own geometries, so the view can draw query -> prediction lines.
INSERT INTO eval_predictions (run_id, query_image_id, query_geom, top1_location_id, top1_geom, top1_error_m,
                              consensus_location_id, consensus_geom, consensus_error_m, first_correct_rank)
SELECT :run_id, p.query_image_id, ql.geom, p.top1_location_id, tl.geom, p.top1_error_m,
       p.consensus_location_id, cl.geom, p.consensus_error_m, p.first_correct_rank
FROM unnest(CAST(:query_image_id AS bigint[]), CAST(:top1_location_id AS integer[]),
            CAST(:top1_error_m AS float8[]), CAST(:consensus_location_id AS integer[]),
            CAST(:consensus_error_m AS float8[]), CAST(:first_correct_rank AS integer[]))
     AS p(query_image_id, top1_location_id, top1_error_m, consensus_location_id, consensus_error_m,
          first_correct_rank)
JOIN images AS qi ON qi.id = p.query_image_id
JOIN locations AS ql ON ql.id = qi.location_id
LEFT JOIN locations AS tl ON tl.id = p.top1_location_id
LEFT JOIN locations AS cl ON cl.id = p.consensus_location_id;
