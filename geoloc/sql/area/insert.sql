-- Store an area; its size is measured in SWEREF99 TM (EPSG:3006), i.e. true square metres.
INSERT INTO areas (name, geom, area_m2, source)
SELECT :name, g, ST_Area(ST_Transform(g, 3006)), :source
FROM (SELECT ST_Multi(ST_GeomFromText(:wkt, 4326)) AS g) AS s
RETURNING id, area_m2;
