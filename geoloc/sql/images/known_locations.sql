-- Locations images may link to, with the split each belongs to.
SELECT id, split FROM locations;
