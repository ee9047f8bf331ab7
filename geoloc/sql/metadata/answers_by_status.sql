-- Answers per status for an area (analysts: how much of the area has Street View coverage).
SELECT m.status, count(*) AS points, count(DISTINCT m.pano_id) AS panoramas
FROM metadata_answers AS m
JOIN grid_points AS g ON g.id = m.grid_point_id
WHERE g.area_id = :area_id
GROUP BY m.status
ORDER BY points DESC;
