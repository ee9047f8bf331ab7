-- Give a model another name (weights live in a folder named after its id, so no file moves).
UPDATE models
SET name = :new_name, updated_at = now()
WHERE name = :name
RETURNING *;
