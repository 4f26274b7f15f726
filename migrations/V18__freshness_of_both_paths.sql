-- Data freshness (V5's view) with both paths that load payments: the every-minute DAG (its load
-- stage) and the live path (its minutes' `live` rows, micro-batch by micro-batch), and which of
-- them captures now: the live path while its lease is held and its heartbeat at most 15 s old
-- (extract's default FRAUDCTL_LIVE_STALE_SECS), else the DAG. The lease is read here, not through
-- live_lease_fresh(): a view reads its tables as its owner, which the reader role may not.
CREATE OR REPLACE VIEW v_pipeline_freshness AS
    SELECT last_load.run_id                                  AS last_run_id,
           last_load.recorded_at                             AS last_run_at,
           last_load.records                                 AS last_run_records,
           (SELECT max(recorded_at) FROM pipeline_runs)      AS last_recorded_at,
           (SELECT max(trans_time) FROM payments_scored)     AS last_payment_at,
           now()                                             AS checked_at,
           CASE WHEN coalesce((SELECT released_at IS NULL AND heartbeat_at > now() - interval '15 seconds'
                               FROM live_lease), false)
                THEN 'live path' ELSE 'every-minute DAG' END AS capturing,
           (SELECT heartbeat_at FROM live_lease)             AS live_heartbeat_at
    FROM (SELECT 1) AS one
    LEFT JOIN LATERAL (
        SELECT run_id, recorded_at, records
        FROM pipeline_runs
        WHERE stage IN ('load', 'live')
        ORDER BY recorded_at DESC
        LIMIT 1
    ) AS last_load ON true;

COMMENT ON VIEW v_pipeline_freshness IS 'When payments were last loaded, by the every-minute DAG or the live path, and which of them captures now (one row; NULLs when nothing ever ran).';
