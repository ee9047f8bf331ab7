-- One model of the registry by name.
SELECT * FROM models WHERE name = :name;
