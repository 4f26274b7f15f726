-- fraudctl transform: the loaded payments of a batch's cards that their history features need
-- (docs/feature-spec.md, "card_history"). $1, $2, $3: time windows, card by card (a card's
-- cc_hash, since, until: the 30 days before its payments of the batch); $4: when the batch's
-- latest payment was captured: a row counts only if it was captured no later (each payment of
-- the batch then keeps those captured no later than itself), so re-running transform on an old
-- batch reads what it read then. Each window is one range scan of payments_scored_card_time_idx
-- (cc_hash, trans_time); a card's windows do not overlap, so no row is read twice.
SELECT p.cc_hash,
       p.trans_num,
       p.trans_time,
       (p.amt * 100)::int8 AS cents,
       p.merch_lat,
       p.merch_long,
       p.category,
       p.captured_at
FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS w (cc_hash, since, until)
JOIN payments_scored p
  ON p.cc_hash = w.cc_hash AND p.trans_time >= w.since AND p.trans_time < w.until
WHERE p.captured_at <= $4
