-- Lists the rules read (docs/rules.md: `payment.card in lists.blocked_cards`): named sets of
-- values (a card by its keyed hash, a merchant, a category, ...), each entry with who added it,
-- when, why and an optional expiry. Changed only through list_add and list_remove, which keep
-- every change in list_changes (`fraudctl lists` calls them); the report's reader role reads.
CREATE TABLE list_entries (
    list        text NOT NULL CHECK (list ~ '^[a-z_][a-z0-9_]{0,62}$'),
    value       text NOT NULL CHECK (char_length(value) BETWEEN 1 AND 200),
    added_by    text NOT NULL CHECK (char_length(added_by) BETWEEN 1 AND 200),
    added_at    timestamptz NOT NULL DEFAULT now(),
    reason      text NOT NULL CHECK (char_length(reason) BETWEEN 1 AND 1000),
    expires_at  timestamptz,
    PRIMARY KEY (list, value)
);

CREATE TABLE list_changes (
    id          bigserial PRIMARY KEY,
    list        text NOT NULL,
    value       text NOT NULL,
    change      text NOT NULL CHECK (change IN ('add', 'remove')),
    changed_by  text NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    reason      text NOT NULL,
    expires_at  timestamptz
);
CREATE INDEX list_changes_list_value_idx ON list_changes (list, value, changed_at);

COMMENT ON TABLE list_entries IS 'The entries of the lists rules read (lists.<list>); changed only by list_add and list_remove.';
COMMENT ON COLUMN list_entries.value IS 'A card by its keyed hash (cc_hash), never its number; a merchant, a category, ... as payments_scored writes it.';
COMMENT ON TABLE list_changes IS 'Every change of list_entries: what a list held at any time, who changed it and why.';

-- Adds (or renews) an entry. A card number in clear in the value is refused (a card's keyed hash,
-- 64 lowercase hex digits, is what a card entry holds: its digit runs are not card numbers), in
-- the reason masked.
CREATE FUNCTION list_add(p_list text, p_value text, p_by text, p_reason text, p_expires timestamptz)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF p_value !~ '^[0-9a-f]{64}$' AND mask_card_numbers(p_value) IS DISTINCT FROM p_value THEN
        RAISE EXCEPTION 'the value holds a card number in clear: add a card by its hash (fraudctl lists add --card-stdin)'
            USING ERRCODE = '22023';
    END IF;
    IF p_expires IS NOT NULL AND p_expires <= now() THEN
        RAISE EXCEPTION 'the expiry % is not in the future', p_expires USING ERRCODE = '22023';
    END IF;
    p_reason := mask_card_numbers(p_reason);
    INSERT INTO list_entries (list, value, added_by, reason, expires_at)
    VALUES (p_list, p_value, p_by, p_reason, p_expires)
    ON CONFLICT (list, value) DO UPDATE
        SET added_by = EXCLUDED.added_by, added_at = now(), reason = EXCLUDED.reason,
            expires_at = EXCLUDED.expires_at;
    INSERT INTO list_changes (list, value, change, changed_by, reason, expires_at)
    VALUES (p_list, p_value, 'add', p_by, p_reason, p_expires);
END $$;

-- Removes an entry; false when the list did not hold it (nothing recorded then).
CREATE FUNCTION list_remove(p_list text, p_value text, p_by text, p_reason text)
RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    DELETE FROM list_entries WHERE list = p_list AND value = p_value;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO list_changes (list, value, change, changed_by, reason)
    VALUES (p_list, p_value, 'remove', p_by, mask_card_numbers(p_reason));
    RETURN true;
END $$;

REVOKE ALL ON list_entries, list_changes FROM PUBLIC;
REVOKE ALL ON FUNCTION list_add(text, text, text, text, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION list_remove(text, text, text, text) FROM PUBLIC;
GRANT SELECT ON list_entries, list_changes TO fraud_report_reader;

-- What decided each payment when a rule set was in force (docs/rules.md): its version, the
-- decision (alert, allow, review, none), the deciding rule (NULL: the model) and every rule that
-- matched. NULL rule_set: scored without rules.
ALTER TABLE payments_scored
    ADD COLUMN rule_set text,
    ADD COLUMN decision text CHECK (decision IN ('alert', 'allow', 'review', 'none')),
    ADD COLUMN decided_by_rule text,
    ADD COLUMN rules_matched text[];
COMMENT ON COLUMN payments_scored.decision IS 'With a rule set: alert (predicted_fraud), allow (a rule kept the model''s alert from being sent), review, none.';
