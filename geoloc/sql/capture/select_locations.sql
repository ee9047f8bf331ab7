-- Locations to capture: those of a split (:split, NULL = any) or the listed ids (:location_ids, NULL = any).
SELECT id
FROM locations
WHERE (CAST(:split AS text) IS NULL OR split = :split)
  AND (CAST(:location_ids AS integer[]) IS NULL OR id = ANY(:location_ids))
ORDER BY id;
