-- A replacement polygon for an area, staged beside the stored one (temp table area_new) and
-- measured; nothing of the area changes yet. valid = PostGIS agrees it is a valid polygon.
CREATE TEMP TABLE area_new ON COMMIT DROP AS
SELECT g AS geom, ST_Area(ST_Transform(g, 3006)) AS area_m2, ST_IsValid(g) AS valid
FROM (SELECT ST_Multi(ST_GeomFromText(:wkt, 4326)) AS g) AS s;
