-- The staging table of one chunk, dropped once merged: several chunks may share one transaction.
DROP TABLE embedding_staging;
