-- Delete the grid points outside the new polygon: those without an answer always (nothing paid is
-- lost, and the metadata worker would otherwise pay to ask about them), those with a paid answer only
-- when delete_answers is true (their answers go with them, by the foreign key's cascade).
DELETE FROM grid_points AS g
USING area_points AS p
WHERE g.id = p.id AND NOT p.inside AND (NOT p.answered OR :delete_answers);
