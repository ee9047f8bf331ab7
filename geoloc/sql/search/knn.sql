-- The k nearest images to one query embedding under one model, with where they were taken: ONE query.
--
-- Bound parameters: query (the embedding, a vector), model_id, k, and the optional filters
--   split, version      only database images of that split / scraping version (NULL: all)
--   lat, lng, within_m  only images whose location lies within within_m metres of (lat, lng):
--                       a slightly larger box in degrees (&&, served by the GiST index on
--                       embeddings (model_id, geom) and estimated from the column's statistics),
--                       then the true distance on the spheroid (geography). Written as
--                       ST_Distance(...) <= within_m rather than ST_DWithin: the latter's geography
--                       support function estimates a tiny selectivity without a geography index,
--                       which misleads the planner.
--   area                only images whose location lies in the polygon of areas.name = area
--   small_region        the most embeddings a region's bounding box may hold to be ranked exactly
--   model_rows          the model's embeddings (NULL: unknown)
--                       (both from geoloc.retrieval.search.region_plan: the threshold grows with the
--                       square root of the model's size; measured in benchmarks/README.md)
--
-- The region is tested on embeddings.geom, the image's location copied onto each embedding row (kept
-- equal to locations.geom by triggers), so neither plan joins a candidate to images or locations;
-- images are read only for the split/version filters and for the k rows returned.
--
-- Two plans, chosen per query at run time by the region's size: region_size estimates this model's
-- embeddings in the region's bounding box as the box's share of the table by the statistics of
-- embeddings.geom (embeddings_box_share: PostGIS's selectivity estimate, well under a millisecond)
-- times model_rows (the models of one database embed the same images, so each is spread like the
-- table); without statistics or model_rows it counts them through the GiST index,
-- stopping at small_region + 1:
--   small  a region with at most small_region embeddings: those rows through the GiST index on
--          (model_id, geom), ranked EXACTLY by the uncast halfvec column (embedding <=> query as
--          halfvec, which no HNSW index serves, so the planner never walks the graph for it). Only
--          the bounding box is tested while ranking: the sorted rows are then checked against the
--          region's true shape (circle on the spheroid, area polygon) and the split/version filters
--          in distance order until k pass (OFFSET 0 keeps the planner from pushing those tests
--          below the sort), so the costly tests run on about k rows instead of the whole box.
--   large  no region, or a large one: ORDER BY the model's HNSW index expression; pgvector 0.8's
--          iterative scan keeps walking the graph until k rows have passed the filters, each checked
--          on the row the walk already read. A large region holds enough of the graph's neighbours
--          that the walk stays short.
-- Each branch is gated by a one-time filter on region_size, so exactly one of them runs (EXPLAIN
-- ANALYZE shows the other as "never executed"); without a region the small branch is pruned when
-- the statement is planned and region_size is never computed.
--
-- {vtype} is filled in before the statement is prepared (geoloc.retrieval.search.knn_statement via
-- geoloc.db.sqlfiles; the type the model's index casts to, e.g. vector(256) or halfvec(256)): a type
-- modifier cannot be a bind parameter. The large
-- branch's ORDER BY must read exactly as the model's partial index embeddings_hnsw_<model_id>,
-- i.e. (embedding::vector(256)) WHERE model_id = <id>, or the planner cannot use that index.
--
-- Run it inside a transaction after these settings (search_options.sql, which
-- geoloc.retrieval.search.set_search_options runs, sets them in one statement):
--   SET LOCAL hnsw.iterative_scan = relaxed_order;  -- pgvector 0.8: keep walking the graph until k
--                                                   -- rows have passed the filters
--   SET LOCAL hnsw.ef_search = 100;                 -- candidate list size (recall vs speed)
--   SET LOCAL plan_cache_mode = force_custom_plan;  -- plan with the actual values, so the partial
--                                                   -- index predicate is proven and the unused
--                                                   -- branch pruned even when prepared
--   SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; SET LOCAL enable_material = off;
--   SET LOCAL max_parallel_workers_per_gather = 0;  -- every join here is a primary-key lookup of a
--                                                   -- few rows: nested loops only (else the large
--                                                   -- branch may join the graph walk to a
--                                                   -- materialised list of the region's images)
--   SET LOCAL enable_bitmapscan = off;              -- region_size's count stops at small_region + 1
--   SET LOCAL jit = off;                            -- compiling costs more than this statement runs
-- relaxed_order may hand rows back slightly out of order, so the outer query sorts the k rows again.
WITH region_box AS MATERIALIZED (
    SELECT CASE
             WHEN CAST(:within_m AS float8) IS NOT NULL THEN
               ST_Expand(ST_SetSRID(ST_MakePoint(CAST(:lng AS float8), CAST(:lat AS float8)), 4326),
                         CAST(:within_m AS float8) / (111000 * cos(radians(CAST(:lat AS float8)))),
                         CAST(:within_m AS float8) / 110000)
             ELSE (SELECT ST_Envelope(ST_Collect(a.geom)) FROM areas AS a WHERE a.name = CAST(:area AS text))
           END AS box
),
region_size AS MATERIALIZED (
    SELECT coalesce(
        (SELECT embeddings_box_share(r.box) * CAST(:model_rows AS float8) FROM region_box AS r),
        (SELECT count(*)
         FROM (SELECT 1
               FROM region_box AS r
               JOIN embeddings AS e ON e.model_id = CAST(:model_id AS integer) AND e.geom && r.box
               LIMIT CAST(:small_region AS integer) + 1) AS inside)) AS embeddings
),
small AS MATERIALIZED (
    SELECT r.image_id, r.distance
    FROM (SELECT e.image_id, e.geom, e.embedding <=> CAST(:query AS halfvec) AS distance
          FROM embeddings AS e
          WHERE e.model_id = CAST(:model_id AS integer)
            AND (CAST(:within_m AS float8) IS NOT NULL OR CAST(:area AS text) IS NOT NULL)
            AND (SELECT embeddings FROM region_size) <= CAST(:small_region AS integer)
            AND e.geom && (SELECT box FROM region_box)
          ORDER BY distance
          OFFSET 0) AS r
    WHERE (CAST(:within_m AS float8) IS NULL
           OR ST_Distance(r.geom::geography,
                          ST_SetSRID(ST_MakePoint(CAST(:lng AS float8), CAST(:lat AS float8)), 4326)::geography)
              <= CAST(:within_m AS float8))
      AND (CAST(:area AS text) IS NULL
           OR EXISTS (SELECT 1 FROM areas AS a
                      WHERE a.name = CAST(:area AS text) AND ST_Intersects(a.geom, r.geom)))
      AND (CAST(:split AS text) IS NULL AND CAST(:version AS text) IS NULL
           OR EXISTS (SELECT 1 FROM images AS i
                      WHERE i.id = r.image_id
                        AND (CAST(:split AS text) IS NULL OR i.split = CAST(:split AS text))
                        AND (CAST(:version AS text) IS NULL OR i.version = CAST(:version AS text))))
    ORDER BY r.distance
    LIMIT :k
),
large AS MATERIALIZED (
    SELECT e.image_id,
           e.embedding::{vtype} <=> CAST(:query AS {vtype}) AS distance
    FROM embeddings AS e
    WHERE e.model_id = CAST(:model_id AS integer)
      AND NOT ((CAST(:within_m AS float8) IS NOT NULL OR CAST(:area AS text) IS NOT NULL)
               AND (SELECT embeddings FROM region_size) <= CAST(:small_region AS integer))
      AND (CAST(:within_m AS float8) IS NULL
           OR (e.geom && ST_Expand(ST_SetSRID(ST_MakePoint(CAST(:lng AS float8), CAST(:lat AS float8)), 4326),
                                   CAST(:within_m AS float8) / (111000 * cos(radians(CAST(:lat AS float8)))),
                                   CAST(:within_m AS float8) / 110000)
               AND ST_Distance(e.geom::geography,
                               ST_SetSRID(ST_MakePoint(CAST(:lng AS float8), CAST(:lat AS float8)), 4326)::geography)
                   <= CAST(:within_m AS float8)))
      AND (CAST(:area AS text) IS NULL
           OR EXISTS (SELECT 1 FROM areas AS a
                      WHERE a.name = CAST(:area AS text) AND ST_Intersects(a.geom, e.geom)))
      AND (CAST(:split AS text) IS NULL AND CAST(:version AS text) IS NULL
           OR EXISTS (SELECT 1 FROM images AS i
                      WHERE i.id = e.image_id
                        AND (CAST(:split AS text) IS NULL OR i.split = CAST(:split AS text))
                        AND (CAST(:version AS text) IS NULL OR i.version = CAST(:version AS text))))
    ORDER BY distance
    LIMIT :k
),
nearest AS (
    SELECT image_id, distance FROM small
    UNION ALL
    SELECT image_id, distance FROM large
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
