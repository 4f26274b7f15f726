-- The live path's lease (src/live/lease.rs, airflow/README.md "The live path"): one `fraudctl
-- live` captures from the payments API at a time. The capturer holds a session-level advisory
-- lock (released by PostgreSQL when its session ends, a killed process's included) and writes
-- its heartbeat here every second; `extract` (the every-minute DAG) waits for the live path's
-- file of its minute while the heartbeat is fresh and polls the API itself when it is not; the
-- watchdog emails operations when it goes stale. One row: the latest capturer.
CREATE TABLE live_lease (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    holder        text NOT NULL,
    acquired_at   timestamptz NOT NULL,
    heartbeat_at  timestamptz NOT NULL,
    released_at   timestamptz,
    minute        text
);

COMMENT ON TABLE live_lease IS 'The live path''s capturer (fraudctl live): who holds the lease, since when, its last heartbeat (every second while it captures), when it let go.';

-- Fresh: held, and a heartbeat within `stale_after` (what extract and the watchdog ask).
CREATE FUNCTION live_lease_fresh(stale_after interval) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT released_at IS NULL AND heartbeat_at > now() - stale_after
                     FROM live_lease), false)
$$;
