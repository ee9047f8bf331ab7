-- Metric coordinates (SWEREF99 TM, EPSG:3006, metres) of the given locations, for training batches
-- of nearby places (geoloc.model.sampler, --batches nearby).
SELECT id,
       ST_X(ST_Transform(geom, 3006)) AS x,
       ST_Y(ST_Transform(geom, 3006)) AS y
FROM locations
WHERE id = ANY(CAST(:ids AS bigint[]));
