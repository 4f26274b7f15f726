-- One email per card and run (a burst), follow-ups threaded: every predicted fraud keeps its own
-- fraud_alerts row, and the frauds of one email share its message_id. thread_id is the
-- Message-ID of the first email about the card (NULL for suppressed rows, which were not
-- emailed); alert reads the card's latest sent row to answer it (In-Reply-To) in the same
-- thread (References).
ALTER TABLE fraud_alerts ADD COLUMN thread_id text;
UPDATE fraud_alerts SET thread_id = message_id WHERE status = 'sent';

-- `fraudctl alert --retry-failed` marks failed alerts 'retrying' (it no longer deletes them): a
-- run that dies before sending them leaves them 'retrying', still sent by the next run whatever
-- their age, and the server's earlier reply stays in `reason` until they go out.
ALTER TABLE fraud_alerts DROP CONSTRAINT fraud_alerts_status_check;
ALTER TABLE fraud_alerts ADD CONSTRAINT fraud_alerts_status_check
    CHECK (status IN ('sent', 'suppressed', 'failed', 'retrying'));
