-- Whether PostGIS accepts the staged replacement polygon (area/stage_replacement.sql) as valid.
SELECT bool_and(valid) FROM area_new;
