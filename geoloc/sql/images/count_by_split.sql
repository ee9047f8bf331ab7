-- Images per split and version, with how many are queries (newest per location and heading).
SELECT split, version, count(*) AS images, count(DISTINCT location_id) AS locations,
       count(*) FILTER (WHERE is_query) AS queries
FROM images
GROUP BY split, version
ORDER BY split, version;
