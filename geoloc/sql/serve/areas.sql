-- `geoloc serve`: every area with its polygon as GeoJSON (WGS84, 6 decimals: about 10 cm).
SELECT name, area_m2, source, ST_AsGeoJSON(geom, 6) AS geometry
FROM areas
ORDER BY name;
