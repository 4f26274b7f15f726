-- Analysts' verdicts on alerts (docs/verdict-links.md): each alert email carries signed links
-- ("Confirmed fraud", "Not fraud") that open the dashboard, which records the verdict through
-- record_alert_verdict on a confirming click. Every verdict is kept; the latest one on a payment
-- is the one in force. fraud_report_reader may call record_alert_verdict and read the views
-- below, nothing else: no table privileges.

CREATE TABLE alert_verdicts (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    trans_num         text COLLATE "C" NOT NULL REFERENCES payments_scored (trans_num),
    verdict           text NOT NULL CHECK (verdict IN ('fraud', 'not_fraud')),
    note              text CHECK (char_length(note) BETWEEN 1 AND 500),
    recorded_at       timestamptz NOT NULL DEFAULT now(),
    -- SHA-256 of the whole token: a token records at most once, even after a later verdict.
    token_sha256      bytea NOT NULL UNIQUE CHECK (octet_length(token_sha256) = 32),
    token_expires_at  timestamptz NOT NULL
);

CREATE INDEX alert_verdicts_trans_num_idx ON alert_verdicts (trans_num, recorded_at DESC, id DESC);

COMMENT ON TABLE alert_verdicts IS 'Analysts'' verdicts on alerts, every one kept (record_alert_verdict); the latest per payment is in force.';

REVOKE ALL ON alert_verdicts FROM PUBLIC;

-- Records the verdict of a verified token (the dashboard checks the signature: the key stays
-- out of the database). The claims are read from the token itself. Returns what happened:
-- 'recorded', or why not: 'malformed', 'already_used', 'expired', 'not_alerted',
-- 'note_too_long'. Writes nothing else.
CREATE FUNCTION record_alert_verdict(token text, note text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    claim   text[] := regexp_match(token, '^v1\.([A-Za-z0-9_-]{1,64})\.(fraud|not_fraud)\.([1-9][0-9]{0,9})\.[0-9a-f]{64}$');
    digest  bytea := sha256(convert_to(coalesce(token, ''), 'UTF8'));
    expires timestamptz;
    noted   text := nullif(btrim(note), '');
BEGIN
    IF claim IS NULL THEN
        RETURN 'malformed';
    END IF;
    expires := to_timestamp(claim[3]::bigint);
    IF EXISTS (SELECT FROM alert_verdicts v WHERE v.token_sha256 = digest) THEN
        RETURN 'already_used';
    ELSIF expires <= now() THEN
        RETURN 'expired';
    ELSIF NOT EXISTS (SELECT FROM fraud_alerts a WHERE a.trans_num = claim[1] AND a.status = 'sent') THEN
        RETURN 'not_alerted';
    ELSIF char_length(noted) > 500 THEN
        RETURN 'note_too_long';
    END IF;
    INSERT INTO alert_verdicts (trans_num, verdict, note, token_sha256, token_expires_at)
    VALUES (claim[1], claim[2], noted, digest, expires)
    ON CONFLICT (token_sha256) DO NOTHING;
    -- A concurrent click of the same link inserted first.
    RETURN CASE WHEN FOUND THEN 'recorded' ELSE 'already_used' END;
END
$$;

COMMENT ON FUNCTION record_alert_verdict(text, text) IS 'Records an analyst''s verdict from a verified verdict token; returns recorded, malformed, already_used, expired, not_alerted or note_too_long.';

REVOKE ALL ON FUNCTION record_alert_verdict(text, text) FROM PUBLIC;

-- Every verdict, oldest first per payment (token_sha256 lets the page tell a used token).
CREATE VIEW v_alert_verdict_history AS
    SELECT id, trans_num, verdict, note, recorded_at, token_sha256, token_expires_at
    FROM alert_verdicts;

-- The verdict in force per payment (the latest), with how many were given.
CREATE VIEW v_alert_verdicts_latest AS
    SELECT DISTINCT ON (v.trans_num)
           v.trans_num,
           v.verdict,
           v.note,
           v.recorded_at,
           count(*) OVER (PARTITION BY v.trans_num) AS verdicts_given,
           min(v.recorded_at) OVER (PARTITION BY v.trans_num) AS first_recorded_at
    FROM alert_verdicts v
    ORDER BY v.trans_num, v.recorded_at DESC, v.id DESC;

COMMENT ON VIEW v_alert_verdicts_latest IS 'The analyst verdict in force per payment: the latest of its verdicts (training labels: model/train.py --verdicts).';

-- Each sent alert, by the business day of its payment (as the report counts days), with its
-- verdict in force and the time from the alert's sending to its first verdict.
CREATE VIEW v_alert_verdict_outcomes AS
    SELECT (p.trans_time AT TIME ZONE business_time_zone())::date AS business_day,
           a.trans_num,
           a.recorded_at AS alerted_at,
           l.verdict,
           l.recorded_at AS verdict_at,
           l.verdicts_given,
           extract(epoch FROM l.first_recorded_at - a.recorded_at)::float8 AS seconds_to_verdict
    FROM fraud_alerts a
    JOIN payments_scored p ON p.trans_num = a.trans_num
    LEFT JOIN v_alert_verdicts_latest l ON l.trans_num = a.trans_num
    WHERE a.status = 'sent';

-- Per business day: alerts sent, verdicts given, confirmed frauds, analyst-confirmed precision
-- (confirmed frauds / alerts with a verdict; NULL without one), verdicts pending and the median
-- time to verdict.
CREATE VIEW v_alert_verdict_daily AS
    SELECT o.business_day,
           count(*) AS alerts_sent,
           count(o.verdict) AS verdicts,
           count(*) FILTER (WHERE o.verdict = 'fraud') AS confirmed_frauds,
           count(*) FILTER (WHERE o.verdict = 'not_fraud') AS not_frauds,
           (count(*) FILTER (WHERE o.verdict = 'fraud'))::float8 / nullif(count(o.verdict), 0) AS confirmed_precision,
           count(*) FILTER (WHERE o.verdict IS NULL) AS pending,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY o.seconds_to_verdict) AS median_seconds_to_verdict
    FROM v_alert_verdict_outcomes o
    GROUP BY o.business_day;

-- What the verdict page shows of an alerted payment (card masked as stored). `reasons` is the
-- payment's `reasons` column when it has one (the model's explanation, a list of {text, …}),
-- else NULL: read through the row so that this view works with or without the column.
CREATE VIEW v_verdict_payments AS
    SELECT p.trans_num,
           p.trans_time,
           p.trans_time AT TIME ZONE business_time_zone() AS local_time,
           '**** ' || p.cc_last4 AS card,
           p.merchant,
           p.category,
           p.amt,
           p.fraud_probability,
           to_jsonb(p) -> 'reasons' AS reasons,
           a.recorded_at AS alerted_at,
           l.verdict AS current_verdict,
           l.recorded_at AS current_verdict_at
    FROM fraud_alerts a
    JOIN payments_scored p ON p.trans_num = a.trans_num
    LEFT JOIN v_alert_verdicts_latest l ON l.trans_num = a.trans_num
    WHERE a.status = 'sent';

GRANT SELECT ON v_alert_verdict_history, v_alert_verdicts_latest, v_alert_verdict_outcomes,
    v_alert_verdict_daily, v_verdict_payments TO fraud_report_reader;
GRANT EXECUTE ON FUNCTION record_alert_verdict(text, text) TO fraud_report_reader;
