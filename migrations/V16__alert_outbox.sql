-- The alert outbox (src/alert/ledger.rs): an email's frauds are recorded 'sending', with its
-- Message-ID and thread headers, before the email goes to the SMTP server, and become 'sent'
-- (with the time the server accepted it) once it did. A run that dies in between leaves them
-- 'sending': the next run sends that same email again, the same frauds under the same Message-ID,
-- before anything else, so a mailbox that drops a repeated Message-ID drops a true duplicate and
-- a fraud loaded meanwhile goes out in an email of its own.
ALTER TABLE fraud_alerts ADD COLUMN in_reply_to text;
ALTER TABLE fraud_alerts ADD COLUMN accepted_at timestamptz;
UPDATE fraud_alerts SET accepted_at = recorded_at WHERE status = 'sent';

ALTER TABLE fraud_alerts DROP CONSTRAINT fraud_alerts_status_check;
ALTER TABLE fraud_alerts ADD CONSTRAINT fraud_alerts_status_check
    CHECK (status IN ('sending', 'sent', 'suppressed', 'failed', 'retrying'));

CREATE INDEX fraud_alerts_sending_idx ON fraud_alerts (message_id) WHERE status = 'sending';

COMMENT ON COLUMN fraud_alerts.in_reply_to IS 'The Message-ID the email answers (the card''s previous email), NULL for the first.';
COMMENT ON COLUMN fraud_alerts.accepted_at IS 'When the SMTP server accepted the email (status sent).';
