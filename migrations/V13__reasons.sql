-- "Why it fired": a predicted fraud's top reasons, as `fraudctl score` wrote them in the scored
-- record's score.reasons (docs/stage-files.md): a JSON array of
-- {"feature", "value", "contribution", "text"}, largest contribution first. NULL for every
-- other payment, and for a fraud whose reasons could not be made (scored by a SageMaker
-- endpoint without the same model loaded locally). Stored for the alert email and the
-- dashboard, which show each reason's `text`.
ALTER TABLE payments_scored ADD COLUMN reasons jsonb;
COMMENT ON COLUMN payments_scored.reasons IS 'A predicted fraud''s top reasons (TreeSHAP contributions in words): [{"feature","value","contribution","text"}, ...]; NULL for other payments.';

-- The dashboard's "Why" column: each predicted fraud's reasons joined into one line, for the
-- report reader (which reads no table).
CREATE VIEW v_payment_reasons AS
    SELECT p.trans_num,
           (SELECT string_agg(r.value ->> 'text', '; ' ORDER BY r.ordinality)
            FROM jsonb_array_elements(p.reasons) WITH ORDINALITY AS r) AS why
    FROM payments_scored p
    WHERE jsonb_typeof(p.reasons) = 'array';
GRANT SELECT ON v_payment_reasons TO fraud_report_reader;
