-- The frauds of the emails an earlier run recorded 'sending' (it died before the SMTP server's
-- acceptance was recorded), grouped by email (plan.rs groups consecutive rows by message_id),
-- each email's frauds oldest first, with its thread headers and its newest payment's time.
SELECT a.message_id, a.thread_id, a.in_reply_to,
       max(p.trans_time) OVER (PARTITION BY a.message_id) AS newest,
       p.trans_num, p.trans_time, p.cc_hash, p.cc_last4, p.merchant, p.category,
       p.amt::float8 AS amt, p.city, p.state, p.fraud_probability, p.model_version, p.scorer,
       false AS retrying, p.reasons
FROM fraud_alerts a
JOIN payments_scored p ON p.trans_num = a.trans_num
WHERE a.status = 'sending'
ORDER BY a.message_id, p.trans_time, p.trans_num
