-- fraudctl load: the staged payments whose trans_num is loaded already with other facts than the
-- card history reads (time, card, amount, merchant's place, category). The first capture of a
-- trans_num is the payment: a later one that differs is refused (upsert.sql leaves the row as it
-- is, and load names these), so that no feature computed from the row ever changes.
SELECT s.trans_num
FROM payments_staging s
JOIN payments_scored p USING (trans_num)
WHERE (p.trans_time, p.cc_hash, p.amt, p.merch_lat, p.merch_long, p.category)
      IS DISTINCT FROM
      (s.trans_time, s.cc_hash, s.amt, s.merch_lat, s.merch_long, s.category)
ORDER BY s.trans_num
