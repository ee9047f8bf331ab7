-- `geoloc serve`: is there an evaluation run of that id?
SELECT EXISTS (SELECT 1 FROM eval_runs WHERE id = :run_id);
