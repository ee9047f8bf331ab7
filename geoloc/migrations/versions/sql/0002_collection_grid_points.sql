-- v_grid_points: every grid point with what the Street View metadata API answered for it
-- ('unchecked' until the worker reached it), for QGIS (unique id column: id).
CREATE OR REPLACE VIEW v_grid_points AS
SELECT g.id,
       a.name AS area,
       g.spacing_m,
       g.idx,
       coalesce(m.status, 'unchecked') AS status,
       m.pano_id,
       m.answered_at,
       g.geom
FROM grid_points AS g
JOIN areas AS a ON a.id = g.area_id
LEFT JOIN metadata_answers AS m ON m.grid_point_id = g.id;
