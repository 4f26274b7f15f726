-- An alert the SMTP server refused for good (a 5xx to the message itself) is recorded as 'failed',
-- with the server's reply in `reason`, so that one refused message no longer stops every later
-- alert. `fraudctl alert --retry-failed` deletes these rows to send the alerts again.
ALTER TABLE fraud_alerts DROP CONSTRAINT fraud_alerts_status_check;
ALTER TABLE fraud_alerts ADD CONSTRAINT fraud_alerts_status_check
    CHECK (status IN ('sent', 'suppressed', 'failed'));
