-- Put the staged polygon in place of the area's (same id: grid points and answers stay attached).
UPDATE areas AS a
SET geom = n.geom, area_m2 = n.area_m2, source = :source
FROM area_new AS n
WHERE a.id = :area_id
RETURNING a.id, a.area_m2;
