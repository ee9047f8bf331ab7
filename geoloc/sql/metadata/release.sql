-- Give back this worker's claims: the listed points (:ids), or all of them (:ids NULL), e.g. points
-- whose tries all failed (a later run asks again) or everything still held when a run stops.
DELETE FROM metadata_claims
WHERE worker = :worker
  AND (CAST(:ids AS bigint[]) IS NULL OR grid_point_id = ANY(CAST(:ids AS bigint[])));
