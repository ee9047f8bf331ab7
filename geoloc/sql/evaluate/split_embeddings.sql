-- One model's embeddings of every image of a split (all scraping versions) with each image's place
-- (location and heading): what geoloc evaluate --post and geoloc models whiten fit the whitening on.
SELECT e.embedding::vector AS embedding, i.location_id, i.heading
FROM embeddings AS e
JOIN images AS i ON i.id = e.image_id
WHERE e.model_id = CAST(:model_id AS integer)
  AND i.split = CAST(:split AS text)
ORDER BY i.id;
