-- How many grid points an area has at a spacing.
SELECT count(*) FROM grid_points WHERE area_id = :area_id AND spacing_m = :spacing;
