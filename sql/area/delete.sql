DELETE FROM areas WHERE name = :name;
