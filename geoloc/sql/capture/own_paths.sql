-- Image files already recorded under a folder prefix (a capture never deletes those).
SELECT path FROM images WHERE root = :root AND path LIKE :prefix;
