-- One grid run at a time (the lock conflicts with itself, not with readers), so the points staged
-- as "not stored yet" stay exactly that until this transaction commits.
LOCK TABLE grid_points IN SHARE ROW EXCLUSIVE MODE;
