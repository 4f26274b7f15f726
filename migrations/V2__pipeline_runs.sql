-- Run audit: one row per (run, stage), written by `fraudctl load` (from the stage files' headers)
-- and `fraudctl alert`. The dashboard's data-freshness figure reads it.
CREATE TABLE pipeline_runs (
    run_id        text NOT NULL,
    stage         text NOT NULL,
    records       bigint NOT NULL,
    rejected      bigint NOT NULL DEFAULT 0,
    file_created_at timestamptz,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    details       jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (run_id, stage)
);

CREATE INDEX pipeline_runs_recorded_at_idx ON pipeline_runs (recorded_at);
