-- The area to replace, locked until the replacement commits (no second replacement in between).
SELECT id FROM areas WHERE name = :name FOR UPDATE;
