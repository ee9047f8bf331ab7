-- The hybrid search in ONE statement: classify the query embedding into geo-cells, then find its k
-- nearest images only inside the most probable cells.
--
-- 1. cell logits: the model's linear cell heads (model_cells: logit = weight . query + bias; pgvector's
--    <#> is the negative inner product), a softmax per level;
-- 2. hierarchical combination (GeoEstimation): a cell scores the product of its own probability and
--    those of its coarser ancestors (parent_id chain), renormalised over the cells of cell_level
--    (NULL: the finest level); the show_cells best cells of that level are returned, ranked;
-- 3. the k nearest images under the model's HNSW index (as in knn.sql), restricted to images whose
--    location lies in the polygon of one of the top_cells best cells (top_cells = 0: no restriction).
--
-- Bound parameters: query (vector), model_id, k, top_cells, show_cells, cell_level, split, version, database_only
-- (true: leave out query images, is_query, as the evaluation protocol does), and the region filters
-- of knn.sql (lat, lng, within_m, area). {vtype} is the type of the model's HNSW index (what the ANN
-- search casts to), {htype} plain vector(D) for the heads' arithmetic; both filled in. Run it after
-- geoloc.retrieval.search.set_search_options (iterative HNSW scan, custom plans).
-- Rows: kind 'cell' (rank, centroid as lat/lng, cell_id, level, h3, probability) then kind 'image'
-- (rank, the neighbour's columns as in knn.sql, and cell_id: the top cell it lies in).
WITH RECURSIVE logits AS MATERIALIZED (
    SELECT c.id, c.level, c.parent_id,
           h.bias - (h.weight::{htype} <#> CAST(:query AS {htype})) AS logit
    FROM model_cells AS h
    JOIN cells AS c ON c.id = h.cell_id
    WHERE h.model_id = CAST(:model_id AS integer)
),
shifted AS (
    SELECT id, level, parent_id, logit - max(logit) OVER (PARTITION BY level) AS z
    FROM logits
),
probs AS MATERIALIZED (
    SELECT id, level, parent_id, exp(z) / sum(exp(z)) OVER (PARTITION BY level) AS p
    FROM shifted
),
chain AS (
    SELECT id, level, p AS score FROM probs WHERE level = 0
    UNION ALL
    SELECT c.id, c.level, chain.score * c.p
    FROM probs AS c
    JOIN chain ON c.parent_id = chain.id
),
top AS MATERIALIZED (
    SELECT id, score / sum(score) OVER () AS probability,
           row_number() OVER (ORDER BY score DESC, id) AS rank
    FROM chain
    WHERE level = coalesce(CAST(:cell_level AS integer), (SELECT max(level) FROM probs))
    ORDER BY score DESC, id
    LIMIT greatest(CAST(:top_cells AS integer), CAST(:show_cells AS integer))
),
allowed AS MATERIALIZED (
    SELECT t.id, c.geom FROM top AS t JOIN cells AS c ON c.id = t.id WHERE t.rank <= CAST(:top_cells AS integer)
),
nearest AS MATERIALIZED (
    SELECT e.image_id,
           e.embedding::{vtype} <=> CAST(:query AS {vtype}) AS distance
    FROM embeddings AS e
    JOIN images AS i ON i.id = e.image_id
    WHERE e.model_id = CAST(:model_id AS integer)
      AND (CAST(:split AS text) IS NULL OR i.split = CAST(:split AS text))
      AND (CAST(:version AS text) IS NULL OR i.version = CAST(:version AS text))
      AND NOT (CAST(:database_only AS boolean) AND i.is_query)
      AND (CAST(:top_cells AS integer) = 0
           OR EXISTS (SELECT 1 FROM allowed AS a WHERE ST_Intersects(a.geom, e.geom)))
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
    ORDER BY distance
    LIMIT :k
)
SELECT 'cell' AS kind, t.rank, NULL::bigint AS image_id, NULL::integer AS location_id, NULL::smallint AS heading,
       NULL::date AS capture_month, NULL::float8 AS distance, NULL::text AS root, NULL::text AS path,
       NULL::text AS split, NULL::text AS version, ST_Y(c.centroid) AS lat, ST_X(c.centroid) AS lng,
       c.id AS cell_id, c.level, c.h3, t.probability
FROM top AS t
JOIN cells AS c ON c.id = t.id
WHERE t.rank <= greatest(CAST(:show_cells AS integer), 1)
UNION ALL
SELECT 'image', row_number() OVER (ORDER BY n.distance, n.image_id), n.image_id, i.location_id, i.heading,
       i.capture_month, n.distance, i.root, i.path, i.split, i.version, ST_Y(l.geom), ST_X(l.geom),
       (SELECT a.id FROM allowed AS a WHERE ST_Intersects(a.geom, l.geom) LIMIT 1), NULL, NULL, NULL
FROM nearest AS n
JOIN images AS i ON i.id = n.image_id
JOIN locations AS l ON l.id = i.location_id
ORDER BY kind, rank;
