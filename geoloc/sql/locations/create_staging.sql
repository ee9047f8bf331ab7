-- Staging table for one `geoloc ingest locations` run: the CSV rows are COPYed here first, checked,
-- and then merged into panoramas and locations in the same transaction (dropped at commit).
CREATE TEMP TABLE csv_locations (
    id               integer PRIMARY KEY,   -- new_order_idx: the id used in image file names
    pano_id          text NOT NULL,         -- PanoID
    lat              double precision NOT NULL,  -- Latitude  (the panorama's own position)
    lng              double precision NOT NULL,  -- Longitude
    capture_month    date,                  -- Date (YYYY-MM) as the first of that month
    copyright        text,
    grid_idx         integer,               -- Location_idx: the original 10 m grid point
    grid_lat         double precision,      -- Location "lat, lng"
    grid_lng         double precision,
    buffer_m         double precision NOT NULL,  -- from the file name new_order_buffer_<m>.csv
    order_no         integer NOT NULL,      -- 0-based row order within its file
    dist_to_origin_m double precision NOT NULL,  -- dist_to_start_point
    split            text
) ON COMMIT DROP;
