-- `geoloc serve`: the file of one image by id (the only way the server finds an image file).
SELECT i.root, i.path FROM images AS i WHERE i.id = :image_id;
