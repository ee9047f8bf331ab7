-- Record the model's row count in its index comment (geoloc.retrieval.index.ROWS_COMMENT reads it
-- back to notice bulk deletes). {name} and {rows} are filled in (a utility statement takes no binds).
COMMENT ON INDEX {name} IS 'geoloc rows={rows}';
