-- Is there an area of that name to limit a search to?
SELECT EXISTS (SELECT 1 FROM areas WHERE name = :area) AS found;
