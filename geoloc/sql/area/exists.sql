SELECT id FROM areas WHERE name = :name;
