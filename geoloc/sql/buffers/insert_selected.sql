-- Store the kept locations of the buffers in :buffers. Ids continue after the largest id in use, in
-- selection order (buffer order, then order number): the same input gives the same ids.
-- grid_idx/grid_geom: the grid point (lowest idx) whose metadata answer named the panorama, if any.
INSERT INTO locations (id, pano_id, grid_idx, grid_geom, geom, buffer_m, order_no, dist_to_origin_m,
                       split, source)
SELECT (SELECT coalesce(max(id), -1) FROM locations)
           + row_number() OVER (ORDER BY s.position, s.order_no),
       s.pano_id, g.idx, g.geom, p.geom, s.buffer_m, s.order_no, s.dist_to_origin_m,
       CAST(:splits AS jsonb) ->> CAST(s.buffer_m AS text), 'selection'
FROM buffer_selection AS s
JOIN panoramas AS p ON p.pano_id = s.pano_id
LEFT JOIN LATERAL (
    SELECT gp.idx, gp.geom FROM metadata_answers AS m JOIN grid_points AS gp ON gp.id = m.grid_point_id
    WHERE m.pano_id = s.pano_id ORDER BY gp.idx LIMIT 1) AS g ON true
WHERE s.buffer_m = ANY(CAST(:buffers AS double precision[]))
ORDER BY s.position, s.order_no;
