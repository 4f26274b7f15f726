-- The predicted frauds not alerted yet of the first $1 cards, cards in the order of their oldest
-- candidate, each card's frauds oldest first (plan.rs groups consecutive rows by cc_hash).
-- A fraud whose alert --retry-failed re-opened ('retrying') is a candidate again.
WITH pending AS (
    SELECT p.*, a.status IS NOT NULL AS retrying
    FROM payments_scored p
    LEFT JOIN fraud_alerts a ON a.trans_num = p.trans_num
    WHERE p.predicted_fraud AND (a.trans_num IS NULL OR a.status = 'retrying')
), cards AS (
    SELECT cc_hash, min(trans_time) AS first_time, min(trans_num) AS first_num
    FROM pending
    GROUP BY cc_hash
    ORDER BY first_time, first_num
    LIMIT $1
)
SELECT p.trans_num, p.trans_time, p.cc_hash, p.cc_last4, p.merchant, p.category,
       p.amt::float8 AS amt, p.city, p.state, p.fraud_probability, p.model_version, p.scorer,
       p.retrying, p.reasons
FROM pending p JOIN cards c USING (cc_hash)
ORDER BY c.first_time, c.first_num, p.trans_time, p.trans_num
