-- Every partitioning with its settings and the number of cells of each level.
SELECT p.id, p.name, p.split, p.images, p.img_min, p.img_max, p.min_res, p.max_res, p.created_at,
       array_agg(n.cells ORDER BY n.level) AS cells
FROM cell_partitions AS p
JOIN LATERAL (SELECT c.level, count(*) AS cells FROM cells AS c WHERE c.partition_id = p.id GROUP BY c.level) AS n
  ON true
GROUP BY p.id
ORDER BY p.name;
