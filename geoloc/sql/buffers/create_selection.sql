-- Run the selection (buffers/select_function.sql must have been executed in this session) and keep
-- its result for the rest of the transaction. position = index of the buffer in :buffers (1-based).
CREATE TEMP TABLE buffer_selection ON COMMIT DROP AS
SELECT array_position(CAST(:buffers AS double precision[]), s.buffer_m) AS position, s.*
FROM pg_temp.geoloc_select_buffers(:lat, :lng, CAST(:buffers AS double precision[]), :quad_segs) AS s;
