-- The original evaluation protocol in one statement, by exact search (no index): for one model and one
-- split (and scraping version), per (location, heading) the newest image (smallest time_index) is a
-- query and every other image of the split/version is the database. Returns the k nearest database
-- images of every query with the distance in metres between the query's location and theirs, measured
-- in SWEREF99 TM (EPSG:3006). A retrieved image is correct when that distance is at most 25 m.
-- :distractors (text[], may be empty) names further splits whose every image joins the database, none
-- of them a query: the same queries searched in a larger database, as a deployment's would be.
--
-- Exact on purpose: the database is a MATERIALIZED CTE, which no index can serve, so each LATERAL
-- subquery is a scan with a top-k heap sort and the recall figures measure the model, not the HNSW
-- approximation. (A split has a few thousand images: about 300 x 1,600 distances for Test v1.)
-- Ties in distance are broken by image id, as in geoloc.retrieval.evaluate's numpy check.
-- {vtype} is the model's vector type, written in before parsing (e.g. vector(256): a type modifier
-- cannot be bound, and the name comes from a closed set); everything else is bound.
WITH pool AS MATERIALIZED (
    SELECT i.id, i.split, i.location_id, i.heading, i.time_index, e.embedding::{vtype} AS v
    FROM images AS i
    JOIN embeddings AS e ON e.image_id = i.id AND e.model_id = CAST(:model_id AS integer)
    WHERE (i.split = CAST(:split AS text) OR i.split = ANY (CAST(:distractors AS text[])))
      AND (CAST(:version AS text) IS NULL OR i.version = CAST(:version AS text))
),
queries AS MATERIALIZED (
    SELECT DISTINCT ON (location_id, heading) id, location_id, v
    FROM pool
    WHERE split = CAST(:split AS text)
    ORDER BY location_id, heading, time_index, id
),
db AS MATERIALIZED (
    SELECT p.id, p.location_id, p.v
    FROM pool AS p
    WHERE NOT EXISTS (SELECT 1 FROM queries AS q WHERE q.id = p.id)
),
hits AS (
    SELECT q.id AS query_image_id, q.location_id AS query_location_id, n.id AS image_id,
           n.location_id, n.distance
    FROM queries AS q
    CROSS JOIN LATERAL (
        SELECT db.id, db.location_id, db.v <=> q.v AS distance
        FROM db
        ORDER BY distance, db.id
        LIMIT :k
    ) AS n
)
SELECT h.query_image_id,
       h.query_location_id,
       row_number() OVER (PARTITION BY h.query_image_id ORDER BY h.distance, h.image_id) AS rank,
       h.image_id,
       h.location_id,
       h.distance,
       ST_Distance(ST_Transform(ql.geom, 3006), ST_Transform(nl.geom, 3006)) AS error_m,
       ST_Y(nl.geom) AS lat,
       ST_X(nl.geom) AS lng
FROM hits AS h
JOIN locations AS ql ON ql.id = h.query_location_id
JOIN locations AS nl ON nl.id = h.location_id
ORDER BY h.query_image_id, rank;
