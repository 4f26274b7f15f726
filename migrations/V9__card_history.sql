-- Card history (docs/feature-spec.md, "card_history"): `fraudctl transform` reads a batch's
-- cards' earlier payments from payments_scored.
--
-- captured_at: when the first run that captured the payment started its extract (raw.jsonl's
-- created_at). A batch's features read only the rows captured before it, so re-running transform
-- on an old run directory reads what it read then, whatever was loaded since (late arrivals
-- included). Rows loaded before this column existed were captured no later than they were loaded.
-- A row written by other means than `fraudctl load` counts as captured when it was written.
ALTER TABLE payments_scored ADD COLUMN captured_at timestamptz;
UPDATE payments_scored SET captured_at = loaded_at;
ALTER TABLE payments_scored ALTER COLUMN captured_at SET NOT NULL,
                            ALTER COLUMN captured_at SET DEFAULT now();
COMMENT ON COLUMN payments_scored.captured_at IS 'When the payment was first captured (raw.jsonl''s created_at): the card-history features of a batch read the rows captured before it.';

-- The history query asks, for the cards of a batch, their payments in a time span: a B-tree on
-- (cc_hash, trans_time) answers it with one range scan a card, and still serves the equality
-- look-ups the hash index served (BENCHMARKS.md measures what it costs a bulk load).
DROP INDEX payments_scored_cc_hash_idx;
CREATE INDEX payments_scored_card_time_idx ON payments_scored (cc_hash, trans_time);
