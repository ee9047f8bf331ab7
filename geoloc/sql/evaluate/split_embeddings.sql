-- One model's embeddings of every image of a split (all scraping versions): the vectors
-- geoloc evaluate --post fits the whitening on (the training split's).
SELECT e.embedding::vector AS embedding
FROM embeddings AS e
JOIN images AS i ON i.id = e.image_id
WHERE e.model_id = CAST(:model_id AS integer)
  AND i.split = CAST(:split AS text)
ORDER BY i.id;
