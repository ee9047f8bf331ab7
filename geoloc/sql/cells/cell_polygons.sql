-- The polygons of some geo-cells as GeoJSON (WGS 84, 7 decimals: about 1 cm), for the maps of
-- `geoloc serve` and `geoloc search --map` (a polygon is the exact union of the cell's finest H3
-- cells, see geoloc/cells/partition.py). Bound parameter: cell_ids (integer[]).
SELECT c.id AS cell_id, c.level, c.h3, c.images, ST_AsGeoJSON(c.geom, 7) AS geometry
FROM cells AS c
WHERE c.id = ANY(CAST(:cell_ids AS integer[]))
ORDER BY c.id;
