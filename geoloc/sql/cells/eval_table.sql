-- The geo-cells accuracy table (demo report): the newest cells-only run on split/version, preferring
-- the runs of model :model, and the runs of the same `geoloc evaluate --cells` beside it - retrieval-only
-- ('model', same model), 'hybrid' (same model) and the thumbnail 'baseline' - each the run of its method
-- nearest in id to the cells run (the evaluation stores the four one after the other, on the same
-- queries and database). Per run, from its stored predictions (eval_predictions): the share of queries
-- whose top-1 prediction lies within each radius of :within_m (metres), the median error, and
-- Recall@1/5 (a correct image among the first 1/5 neighbours) - NULL for cells-only, which ranks no
-- images. No row when no cells run is stored.
-- Bound parameters: split, version (NULL: all versions), model (NULL: any), within_m (float8[]).
WITH cells_run AS (
    SELECT r.id, r.model_id
    FROM eval_runs AS r
    LEFT JOIN models AS m ON m.id = r.model_id
    WHERE r.method = 'cells' AND r.split = CAST(:split AS text)
      AND r.version IS NOT DISTINCT FROM CAST(:version AS text)
    ORDER BY (m.name = CAST(:model AS text)) DESC NULLS LAST, r.id DESC
    LIMIT 1
),
chosen AS (
    SELECT 1 AS position, 'cells' AS method, c.id AS run_id FROM cells_run AS c
    UNION ALL
    SELECT x.position, x.method,
           (SELECT r.id FROM eval_runs AS r
            WHERE r.method = x.method AND r.split = CAST(:split AS text)
              AND r.version IS NOT DISTINCT FROM CAST(:version AS text)
              AND (x.method = 'baseline' OR r.model_id = c.model_id)
            ORDER BY abs(r.id - c.id), r.id DESC
            LIMIT 1)
    FROM cells_run AS c
    CROSS JOIN (VALUES (2, 'model'), (3, 'hybrid'), (4, 'baseline')) AS x(position, method)
),
errors AS (
    SELECT ch.position, p.top1_error_m AS error_m, p.first_correct_rank AS first_correct
    FROM chosen AS ch
    JOIN eval_predictions AS p ON p.run_id = ch.run_id
),
shares AS (
    SELECT e.position, w.radius, avg(CASE WHEN e.error_m <= w.radius THEN 1.0 ELSE 0.0 END) AS share
    FROM errors AS e
    CROSS JOIN unnest(CAST(:within_m AS float8[])) AS w(radius)
    GROUP BY e.position, w.radius
)
SELECT ch.position, ch.method, r.id AS run_id, m.name AS model, r.metrics -> 'top_cells' AS top_cells,
       r.metrics -> 'cell_level' AS cell_level,
       (SELECT count(*) FROM errors AS e WHERE e.position = ch.position) AS queries,
       (SELECT array_agg(s.share::float8 ORDER BY s.radius) FROM shares AS s WHERE s.position = ch.position)
           AS within,
       (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY e.error_m) FROM errors AS e
        WHERE e.position = ch.position) AS median_m,
       CASE WHEN ch.method <> 'cells' THEN
           (SELECT avg(CASE WHEN e.first_correct <= 1 THEN 1.0 ELSE 0.0 END)::float8 FROM errors AS e
            WHERE e.position = ch.position) END AS recall_1,
       CASE WHEN ch.method <> 'cells' THEN
           (SELECT avg(CASE WHEN e.first_correct <= 5 THEN 1.0 ELSE 0.0 END)::float8 FROM errors AS e
            WHERE e.position = ch.position) END AS recall_5
FROM chosen AS ch
JOIN eval_runs AS r ON r.id = ch.run_id
LEFT JOIN models AS m ON m.id = r.model_id
ORDER BY ch.position;
