-- Only links fraudctl issued record a verdict (docs/verdict-links.md, "Recording"). The signing
-- key stays out of the database, so record_alert_verdict cannot check a token's signature;
-- instead the alert stage registers the SHA-256 of every token it puts in an email, before
-- sending it, and the function accepts only those. Whoever holds the dashboard's credentials
-- can no longer record a verdict without a link from an email.

CREATE TABLE issued_verdict_tokens (
    token_sha256  bytea PRIMARY KEY CHECK (octet_length(token_sha256) = 32),
    trans_num     text COLLATE "C" NOT NULL,
    verdict       text NOT NULL CHECK (verdict IN ('fraud', 'not_fraud')),
    expires_at    timestamptz NOT NULL,
    issued_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX issued_verdict_tokens_expires_idx ON issued_verdict_tokens (expires_at);

COMMENT ON TABLE issued_verdict_tokens IS 'SHA-256 of every verdict token an alert email carried (registered by fraudctl alert before sending); record_alert_verdict accepts only these. Rows a day past their expiry are deleted by the alert stage.';

REVOKE ALL ON issued_verdict_tokens FROM PUBLIC;

-- Alerts sent before this migration carry tokens nobody registered: they are accepted as
-- before (their links expire within the longest TTL, 30 days). The moment is kept here.
INSERT INTO fraudctl_settings (key, value) VALUES ('verdict_token_registry_since', now()::text);

-- As in V11, plus 'unknown_token': a well-formed token the alert stage never issued (nothing is
-- written). The checks run in this order: malformed, already_used, unknown_token, expired,
-- not_alerted, note_too_long.
CREATE OR REPLACE FUNCTION record_alert_verdict(token text, note text DEFAULT NULL) RETURNS text
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
    ELSIF NOT EXISTS (SELECT FROM issued_verdict_tokens i WHERE i.token_sha256 = digest)
          AND NOT EXISTS (SELECT FROM fraud_alerts a, fraudctl_settings s
                          WHERE a.trans_num = claim[1] AND a.status = 'sent'
                            AND s.key = 'verdict_token_registry_since'
                            AND a.recorded_at < s.value::timestamptz) THEN
        RETURN 'unknown_token';
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

COMMENT ON FUNCTION record_alert_verdict(text, text) IS 'Records an analyst''s verdict from a token an alert email carried (issued_verdict_tokens); returns recorded, malformed, already_used, unknown_token, expired, not_alerted or note_too_long.';
