-- One model by name, locked until the end of the transaction (a swap reads it, then renames it).
SELECT * FROM models WHERE name = :name FOR UPDATE;
