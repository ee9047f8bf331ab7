-- Per buffer of the selection: how many locations were kept; how many locations of that buffer
-- are already stored from the CSVs (any source but 'selection') and from an earlier selection; how
-- many of those the selection kept too (same panorama in the same buffer), and how many also at
-- the same order number. Jaccard with the CSV set = csv_equal / (kept + csv - csv_equal).
WITH kept AS (
    SELECT position, buffer_m, count(*) AS kept
    FROM buffer_selection
    GROUP BY position, buffer_m
), stored AS (
    SELECT l.buffer_m, l.source = 'selection' AS selected, count(*) AS stored,
           count(s.pano_id) AS equal,
           count(s.pano_id) FILTER (WHERE s.order_no = l.order_no) AS same_order
    FROM locations AS l
    LEFT JOIN buffer_selection AS s ON s.buffer_m = l.buffer_m AND s.pano_id = l.pano_id
    GROUP BY l.buffer_m, l.source = 'selection'
)
SELECT k.position, k.buffer_m, k.kept,
       coalesce(c.stored, 0) AS csv, coalesce(c.equal, 0) AS csv_equal,
       coalesce(c.same_order, 0) AS csv_same_order,
       coalesce(e.stored, 0) AS selected_before, coalesce(e.same_order, 0) AS selected_equal
FROM kept AS k
LEFT JOIN stored AS c ON c.buffer_m = k.buffer_m AND NOT c.selected
LEFT JOIN stored AS e ON e.buffer_m = k.buffer_m AND e.selected
ORDER BY k.position;
