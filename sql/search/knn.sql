-- The k nearest images to one query embedding under one model, with where they were taken: ONE query.
--
-- Bound parameters: query (the embedding, a vector), model_id, k, and the optional filters
--   split, version      only database images of that split / scraping version (NULL: all)
--   lat, lng, within_m  only images whose location lies within within_m metres of (lat, lng):
--                       a slightly larger box in degrees (&&, served by the GiST index and
--                       estimated from the column's statistics), then the true distance on the
--                       spheroid (geography). Written as ST_Distance(...) <= within_m rather than
--                       ST_DWithin: the latter's geography support function estimates a tiny
--                       selectivity without a geography index, so the planner would always sort
--                       the region exactly (100 ms for 4,000 of 100,000 rows) instead of walking
--                       the HNSW graph (6 ms); the results are the same.
--   area                only images whose location lies in the polygon of areas.name = area
-- {vtype} is composed into the text by geoloc.retrieval.index.vector_type, e.g. vector(256): a type
-- modifier cannot be a bind parameter. The ORDER BY expression must read exactly as the model's
-- partial index embeddings_hnsw_<model_id>, i.e. (embedding::vector(256)) WHERE model_id = <id>,
-- or the planner cannot use that index.
--
-- Run it inside a transaction after (geoloc.retrieval.search does):
--   SET LOCAL hnsw.iterative_scan = relaxed_order;  -- pgvector 0.8: keep walking the graph until k
--                                                   -- rows have passed the filters
--   SET LOCAL hnsw.ef_search = 100;                 -- candidate list size (recall vs speed)
--   SET LOCAL plan_cache_mode = force_custom_plan;  -- plan with the actual model_id, so the partial
--                                                   -- index predicate is proven even when prepared
-- relaxed_order may hand rows back slightly out of order, so the outer query sorts the k rows again.
WITH nearest AS MATERIALIZED (
    SELECT e.image_id,
           e.embedding::{vtype} <=> %(query)s::{vtype} AS distance
    FROM embeddings AS e
    JOIN images AS i ON i.id = e.image_id
    JOIN locations AS l ON l.id = i.location_id
    WHERE e.model_id = %(model_id)s::integer
      AND (%(split)s::text IS NULL OR i.split = %(split)s::text)
      AND (%(version)s::text IS NULL OR i.version = %(version)s::text)
      AND (%(within_m)s::float8 IS NULL
           OR (l.geom && ST_Expand(ST_SetSRID(ST_MakePoint(%(lng)s::float8, %(lat)s::float8), 4326),
                                   %(within_m)s::float8 / (111000 * cos(radians(%(lat)s::float8))),
                                   %(within_m)s::float8 / 110000)
               AND ST_Distance(l.geom::geography,
                               ST_SetSRID(ST_MakePoint(%(lng)s::float8, %(lat)s::float8), 4326)::geography)
                   <= %(within_m)s::float8))
      AND (%(area)s::text IS NULL
           OR EXISTS (SELECT 1 FROM areas AS a
                      WHERE a.name = %(area)s::text AND ST_Intersects(a.geom, l.geom)))
    ORDER BY distance
    LIMIT %(k)s
)
SELECT row_number() OVER (ORDER BY n.distance, n.image_id) AS rank,
       n.image_id,
       i.location_id,
       i.heading,
       i.capture_month,
       n.distance,
       i.root,
       i.path,
       i.split,
       i.version,
       ST_Y(l.geom) AS lat,
       ST_X(l.geom) AS lng
FROM nearest AS n
JOIN images AS i ON i.id = n.image_id
JOIN locations AS l ON l.id = i.location_id
ORDER BY n.distance, n.image_id;
