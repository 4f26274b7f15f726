-- Verdicts (docs/verdict-links.md, "Recording"): a card number typed into a note is masked
-- before it is stored (and in the notes stored before), and the unregistered tokens of alerts
-- sent before V14 are accepted only while a link issued then could still be valid.

-- A text with its card numbers masked, by the rule of tests/fixtures/card_numbers.json (which
-- src/pan.rs follows too): a digit is any Unicode decimal digit (category Nd), folded to its
-- value; a chain is a maximal sequence of digits separated only by characters that are neither
-- digits nor ASCII letters (any number of them, none included); a chain holding 11 to 19
-- consecutive digits that pass the Luhn check is replaced whole, from its first digit to its
-- last, by '****' and its last four digits (ASCII). All else is kept as it is. Only code points
-- and ASCII ranges are tested: nothing depends on the database's locale.
CREATE FUNCTION mask_card_numbers(note text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    -- The zero of each Nd block (Unicode 18.0, icu_properties_data 2.4.0 of Cargo.lock), in
    -- hexadecimal; a block is ten code points, 0 to 9.
    zeros    int[] := (SELECT array_agg(('x' || lpad(z, 8, '0'))::bit(32)::int)
                       FROM unnest(string_to_array(
        '30 660 6F0 7C0 966 9E6 A66 AE6 B66 BE6 C66 CE6 D66 DE6 E50 ED0 F20 1040 1090 17E0 1810 '
        '1946 19D0 1A80 1A90 1B50 1BB0 1C40 1C50 A620 A8D0 A900 A9D0 A9F0 AA50 ABF0 FF10 104A0 '
        '10D30 10D40 11066 110F0 11136 111D0 112F0 11450 114D0 11650 116C0 116D0 116DA 11730 '
        '118E0 11950 11BF0 11C50 11D50 11DA0 11DE0 11F50 16130 16A60 16AC0 16B50 16D70 1CCF0 '
        '1D7CE 1D7D8 1D7E2 1D7EC 1D7F6 1E140 1E2F0 1E4F0 1E5F1 1E950 1FBF0', ' ')) z);
    -- Every digit, each block's ten in a row: translate() folds them to '0'-'9', one character
    -- for one, so a position in `folded` is the same in `note` (an ASCII text has none to fold).
    nd       text := (SELECT string_agg(chr(z + d), '' ORDER BY z, d)
                      FROM unnest(zeros) z, generate_series(0, 9) d);
    folded   text := CASE WHEN octet_length(note) = char_length(note) THEN note
                         ELSE translate(note, nd, repeat('0123456789', cardinality(zeros))) END;
    chain_re text := '[0-9](?:[^0-9A-Za-z]*[0-9])*';
    -- The text between the chains: it holds no digit, so it reads the same in `note`.
    gaps     text[] := regexp_split_to_array(folded, chain_re);
    masked   text := gaps[1];
    done     int := char_length(gaps[1]);  -- characters of `note` accounted for
    i        int := 1;
    chain    text;
    digits   int[];
    luhn     int;
    card     boolean;
BEGIN
    FOR chain IN SELECT m[1] FROM regexp_matches(folded, chain_re, 'g') m LOOP
        digits := string_to_array(regexp_replace(chain, '[^0-9]', '', 'g'), NULL)::int[];
        -- For each last digit, the Luhn sum leftwards (every second digit doubled, its digits
        -- added) over 11 to 19 digits.
        card := false;
        <<ends>>
        FOR upto IN 11..cardinality(digits) LOOP
            luhn := 0;
            FOR k IN 0..least(18, upto - 1) LOOP
                luhn := luhn + CASE WHEN k % 2 = 0 THEN digits[upto - k]
                                    ELSE digits[upto - k] * 2 % 10 + digits[upto - k] / 5 END;
                card := k >= 10 AND luhn % 10 = 0;
                EXIT ends WHEN card;
            END LOOP;
        END LOOP;
        i := i + 1;
        masked := masked
            || CASE WHEN card THEN '****' || array_to_string(digits[cardinality(digits) - 3:], '')
                    ELSE substr(note, done + 1, char_length(chain)) END
            || gaps[i];
        done := done + char_length(chain) + char_length(gaps[i]);
    END LOOP;
    RETURN masked;
END
$$;

COMMENT ON FUNCTION mask_card_numbers(text) IS 'A text with every card number masked to ****1234 (tests/fixtures/card_numbers.json: Unicode digits, any separators but ASCII letters, 11-19 digits passing Luhn).';

REVOKE ALL ON FUNCTION mask_card_numbers(text) FROM PUBLIC;

UPDATE alert_verdicts SET note = mask_card_numbers(note)
WHERE note IS DISTINCT FROM mask_card_numbers(note);

-- As in V14 (the same checks, in the same order: malformed, already_used, unknown_token,
-- expired, not_alerted, note_too_long), with two changes:
-- * the note is stored masked (mask_card_numbers); its 500-character limit is on what is stored;
-- * a token nobody registered (a link of an alert sent before V14) is accepted only while a link
--   issued then could still be valid: until the longest link lifetime after the registry started
--   (720 hours, FRAUDCTL_VERDICT_TTL_HOURS's maximum: src/verdict.rs), and only with an expiry
--   within it and within 720 hours of the alert's sending. Any other is 'unknown_token'.
CREATE OR REPLACE FUNCTION record_alert_verdict(token text, note text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    claim   text[] := regexp_match(token, '^v1\.([A-Za-z0-9_-]{1,64})\.(fraud|not_fraud)\.([1-9][0-9]{0,9})\.[0-9a-f]{64}$');
    digest  bytea := sha256(convert_to(coalesce(token, ''), 'UTF8'));
    expires timestamptz;
    noted   text := nullif(btrim(note), '');
    since   timestamptz := (SELECT s.value::timestamptz FROM fraudctl_settings s
                            WHERE s.key = 'verdict_token_registry_since');
    until   timestamptz := since + interval '720 hours';
BEGIN
    IF claim IS NULL THEN
        RETURN 'malformed';
    END IF;
    expires := to_timestamp(claim[3]::bigint);
    IF EXISTS (SELECT FROM alert_verdicts v WHERE v.token_sha256 = digest) THEN
        RETURN 'already_used';
    ELSIF NOT EXISTS (SELECT FROM issued_verdict_tokens i WHERE i.token_sha256 = digest)
          AND (now() < until AND expires <= until
               AND EXISTS (SELECT FROM fraud_alerts a
                           WHERE a.trans_num = claim[1] AND a.status = 'sent'
                             AND a.recorded_at < since
                             AND expires <= a.recorded_at + interval '720 hours')) IS NOT TRUE THEN
        RETURN 'unknown_token';
    ELSIF expires <= now() THEN
        RETURN 'expired';
    ELSIF NOT EXISTS (SELECT FROM fraud_alerts a WHERE a.trans_num = claim[1] AND a.status = 'sent') THEN
        RETURN 'not_alerted';
    END IF;
    noted := mask_card_numbers(noted);
    IF char_length(noted) > 500 THEN
        RETURN 'note_too_long';
    END IF;
    INSERT INTO alert_verdicts (trans_num, verdict, note, token_sha256, token_expires_at)
    VALUES (claim[1], claim[2], noted, digest, expires)
    ON CONFLICT (token_sha256) DO NOTHING;
    -- A concurrent click of the same link inserted first.
    RETURN CASE WHEN FOUND THEN 'recorded' ELSE 'already_used' END;
END
$$;

COMMENT ON FUNCTION record_alert_verdict(text, text) IS 'Records an analyst''s verdict (note stored with card numbers masked) from a token an alert email carried (issued_verdict_tokens; an unregistered one only for an alert sent before the registry, within 720 hours of its start); returns recorded, malformed, already_used, unknown_token, expired, not_alerted or note_too_long.';
