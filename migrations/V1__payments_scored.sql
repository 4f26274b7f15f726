-- One row per transaction, keyed by the source's trans_num. `fraudctl load` upserts into it with
-- ON CONFLICT (trans_num) DO UPDATE, so re-running any stage converges to the same rows.
-- Personal data is minimised: no card number (only its last four digits and a keyed hash for
-- joining), no names, street, date of birth or home coordinates.
CREATE TABLE payments_scored (
    trans_num          text PRIMARY KEY,
    trans_time         timestamptz NOT NULL,
    cc_last4           text NOT NULL CHECK (cc_last4 ~ '^[0-9]{4}$'),
    cc_hash            text NOT NULL,
    merchant           text NOT NULL,
    category           text NOT NULL,
    amt                numeric(14, 2) NOT NULL,
    gender             text NOT NULL,
    city               text NOT NULL,
    state              text NOT NULL,
    city_pop           bigint NOT NULL,
    merch_lat          double precision NOT NULL,
    merch_long         double precision NOT NULL,
    age_years          double precision,
    distance_km        double precision,
    is_fraud_label     boolean,
    fraud_probability  double precision NOT NULL CHECK (fraud_probability BETWEEN 0 AND 1),
    predicted_fraud    boolean NOT NULL,
    threshold          double precision NOT NULL,
    model_version      text NOT NULL,
    scorer             text NOT NULL,
    needs_rescore      boolean NOT NULL DEFAULT false,
    run_id             text NOT NULL,
    loaded_at          timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX payments_scored_trans_time_idx ON payments_scored (trans_time);
CREATE INDEX payments_scored_cc_hash_idx ON payments_scored (cc_hash);
CREATE INDEX payments_scored_needs_rescore_idx ON payments_scored (trans_num) WHERE needs_rescore;

COMMENT ON TABLE payments_scored IS 'Scored card payments, one row per trans_num (fraudctl load).';
COMMENT ON COLUMN payments_scored.cc_hash IS 'HMAC-SHA256 of the card number, keyed by FRAUDCTL_PAN_HASH_KEY (hex).';
COMMENT ON COLUMN payments_scored.is_fraud_label IS 'The source''s own label (the API replays a labelled data set); never a model input.';
COMMENT ON COLUMN payments_scored.needs_rescore IS 'Scored by the local fallback while the SageMaker endpoint was unreachable.';
