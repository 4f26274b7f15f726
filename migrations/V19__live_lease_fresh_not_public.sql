-- live_lease_fresh() (V17) is the pipeline's, like every function here: no EXECUTE for PUBLIC, so
-- the report reader role (the dashboard's) may call only what V5 and V11 granted it.
REVOKE EXECUTE ON FUNCTION live_lease_fresh(interval) FROM PUBLIC;
