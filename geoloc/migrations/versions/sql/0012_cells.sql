-- v_cells: every geo-cell of every partitioning, for QGIS (unique id column: id).
-- One layer per level: filter on partition and level. images = training images counted in the cell;
-- locations = locations of any split assigned to it (geoloc cells build fills location_cells).
CREATE OR REPLACE VIEW v_cells AS
SELECT c.id,
       p.name AS partition,
       c.level,
       c.class_index,
       c.h3,
       c.resolution,
       c.parent_id,
       c.images,
       (SELECT count(*) FROM location_cells AS lc WHERE lc.cell_id = c.id) AS locations,
       round((ST_Area(c.geom::geography) / 1e6)::numeric, 4) AS area_km2,
       c.geom::geometry(MultiPolygon, 4326) AS geom
FROM cells AS c
JOIN cell_partitions AS p ON p.id = c.partition_id;
