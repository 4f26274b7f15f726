-- fraudctl transform: the loaded payments of a batch's cards that their history features need
-- (docs/feature-spec.md, "card_history"). $1: the cards' cc_hash; $2..$3: the batch's time span
-- (30 days before its first payment, to its last); $4: when the batch was captured: a row counts
-- only if it was captured before, so re-running transform on an old batch reads what it read
-- then. Served by payments_scored_card_time_idx (cc_hash, trans_time).
SELECT cc_hash,
       trans_num,
       trans_time,
       (amt * 100)::int8 AS cents,
       merch_lat,
       merch_long,
       category
FROM payments_scored
WHERE cc_hash = ANY($1::text[])
  AND trans_time >= $2
  AND trans_time < $3
  AND captured_at < $4
