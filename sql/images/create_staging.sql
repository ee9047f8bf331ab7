-- Staging table for one import run: filled with COPY, then moved into images in the same transaction.
CREATE TEMP TABLE image_staging (
    location_id   integer     NOT NULL,
    heading       smallint    NOT NULL,
    time_index    smallint    NOT NULL,
    capture_month date,
    scraped_at    timestamp,
    root          text        NOT NULL,
    path          text        NOT NULL,
    sha256        varchar(64) NOT NULL,
    bytes         integer     NOT NULL,
    width         smallint    NOT NULL,
    height        smallint    NOT NULL,
    split         varchar(8),
    version       varchar(16) NOT NULL,
    source        text        NOT NULL
) ON COMMIT DROP;
