-- Store what the API answered for one grid point, in one statement (= one short transaction):
-- the panorama of an OK answer first (the first answer that names it wins: many points share
-- one), then the grid point's answer, and the worker's claim on the point goes in the same
-- transaction. Inserts are ON CONFLICT DO NOTHING, so storing twice changes nothing.
-- new_panorama = 1 when the panorama was not known yet; stored = 1 when the answer is new.
WITH pano AS (
    INSERT INTO panoramas (pano_id, geom, capture_month, copyright)
    SELECT CAST(:pano_id AS text), ST_SetSRID(ST_MakePoint(:lng, :lat), 4326), :capture_month, :copyright
    WHERE CAST(:pano_id AS text) IS NOT NULL
    ON CONFLICT (pano_id) DO NOTHING
    RETURNING pano_id
), answer AS (
    INSERT INTO metadata_answers (grid_point_id, status, pano_id)
    VALUES (:grid_point_id, :status, :pano_id)
    ON CONFLICT (grid_point_id) DO NOTHING
    RETURNING grid_point_id
), released AS (
    DELETE FROM metadata_claims WHERE grid_point_id = :grid_point_id AND worker = :worker
)
SELECT (SELECT count(*) FROM pano) AS new_panorama, (SELECT count(*) FROM answer) AS stored;
