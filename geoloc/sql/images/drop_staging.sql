-- The staging table of one batch, dropped once merged: several batches may share one transaction.
DROP TABLE image_staging;
