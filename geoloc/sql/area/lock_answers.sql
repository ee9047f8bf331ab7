-- While an area's polygon is replaced no metadata answer may arrive: the points are classified as
-- answered or not once, and a point found without an answer must not receive a paid one before it is
-- removed. SHARE mode blocks inserts (a running metadata worker waits seconds) and lets readers read.
LOCK TABLE metadata_answers IN SHARE MODE;
