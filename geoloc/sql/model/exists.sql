-- Is a model name taken?
SELECT id, status FROM models WHERE name = :name;
