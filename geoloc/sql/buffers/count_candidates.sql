-- How many panoramas the selection ran over (its candidate table lives for the transaction).
SELECT count(*) FROM pg_temp.buffer_candidates;
