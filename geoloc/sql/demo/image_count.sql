-- How many images are stored (the demo imports them only into an empty table).
SELECT count(*) FROM images;
