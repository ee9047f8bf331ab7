-- One level's cells from parallel arrays; the polygon arrives as GeoJSON (lng, lat) and is stored
-- as a MultiPolygon; parent_id is the containing cell of the next coarser level (NULL on level 0).
INSERT INTO cells (partition_id, level, class_index, h3, resolution, parent_id, images, geom, centroid)
SELECT :partition_id, :level, c.class_index, c.h3, c.resolution, c.parent_id, c.images,
       ST_Multi(ST_SetSRID(ST_GeomFromGeoJSON(c.geojson), 4326)),
       ST_SetSRID(ST_MakePoint(c.lng, c.lat), 4326)
FROM unnest(CAST(:class_index AS integer[]), CAST(:h3 AS text[]), CAST(:resolution AS smallint[]),
            CAST(:parent_id AS integer[]), CAST(:images AS integer[]), CAST(:geojson AS text[]),
            CAST(:lat AS float8[]), CAST(:lng AS float8[]))
     AS c(class_index, h3, resolution, parent_id, images, geojson, lat, lng)
RETURNING id, h3;
