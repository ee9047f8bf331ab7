-- Forget an earlier selection of these buffers (CSV-imported locations are never touched).
DELETE FROM locations WHERE source = 'selection' AND buffer_m = ANY(CAST(:buffers AS double precision[]));
