-- Alert bookkeeping: a fraud is emailed at most once. `fraudctl alert` records a row as 'sent'
-- only after the SMTP server accepted the message; 'suppressed' rows are old frauds met again in a
-- backfill (recorded, not emailed).
CREATE TABLE fraud_alerts (
    trans_num     text PRIMARY KEY REFERENCES payments_scored (trans_num),
    status        text NOT NULL CHECK (status IN ('sent', 'suppressed')),
    message_id    text NOT NULL,
    recipients    text NOT NULL,
    run_id        text NOT NULL,
    reason        text,
    recorded_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX fraud_alerts_recorded_at_idx ON fraud_alerts (recorded_at);
