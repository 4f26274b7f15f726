-- A challenger model in shadow (docs/rules.md, "A challenger model"): `score` also scores every
-- payment with a second model when one is configured; its probability, version and prediction at
-- its own threshold are stored beside the champion's, and never alerted on. NULL: no challenger.
ALTER TABLE payments_scored
    ADD COLUMN challenger_model_version text,
    ADD COLUMN challenger_probability double precision
        CHECK (challenger_probability BETWEEN 0 AND 1),
    ADD COLUMN challenger_predicted_fraud boolean,
    ADD CONSTRAINT payments_scored_challenger_whole CHECK (
        (challenger_model_version IS NULL) = (challenger_probability IS NULL)
        AND (challenger_probability IS NULL) = (challenger_predicted_fraud IS NULL));
COMMENT ON COLUMN payments_scored.challenger_predicted_fraud IS 'The challenger model''s prediction at its own threshold; never alerted on.';

-- Champion against challenger over business days [from_day, to_day], one row per challenger
-- version that scored payments of the period: the two models' predictions on the same payments
-- (the champion's at its threshold, before rules, as the challenger's is), how often they agree,
-- and each one's confusion counts against the source's labels (labelled payments only) and its
-- alerts confirmed by analysts (verdicts exist for the champion's sent alerts only).
CREATE FUNCTION challenger_comparison(from_day date, to_day date)
RETURNS TABLE (
    challenger_model_version text,
    champion_model_versions  text[],
    days                     integer,
    payments                 bigint,
    champion_alerts          bigint,
    challenger_alerts        bigint,
    both_alert               bigint,
    agreement                double precision,
    labelled                 bigint,
    champion_true_pos        bigint,
    champion_false_pos       bigint,
    champion_false_neg       bigint,
    challenger_true_pos      bigint,
    challenger_false_pos     bigint,
    challenger_false_neg     bigint,
    confirmed_frauds         bigint,
    confirmed_caught_by_challenger bigint
) LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH p AS (
        SELECT s.challenger_model_version AS version, s.model_version,
               s.fraud_probability >= s.threshold AS champion,
               s.challenger_predicted_fraud AS challenger,
               s.is_fraud_label AS label,
               v.verdict = 'fraud' AS confirmed
        FROM payments_scored s
        LEFT JOIN v_alert_verdicts_latest v ON v.trans_num = s.trans_num
        WHERE s.challenger_model_version IS NOT NULL
          AND s.trans_time >= (from_day::timestamp AT TIME ZONE business_time_zone())
          AND s.trans_time < ((to_day + 1)::timestamp AT TIME ZONE business_time_zone())
    )
    SELECT version,
           array_agg(DISTINCT model_version ORDER BY model_version),
           to_day - from_day + 1,
           count(*),
           count(*) FILTER (WHERE champion),
           count(*) FILTER (WHERE challenger),
           count(*) FILTER (WHERE champion AND challenger),
           avg((champion = challenger)::int)::double precision,
           count(label),
           count(*) FILTER (WHERE champion AND label),
           count(*) FILTER (WHERE champion AND NOT label),
           count(*) FILTER (WHERE NOT champion AND label),
           count(*) FILTER (WHERE challenger AND label),
           count(*) FILTER (WHERE challenger AND NOT label),
           count(*) FILTER (WHERE NOT challenger AND label),
           count(*) FILTER (WHERE confirmed),
           count(*) FILTER (WHERE confirmed AND challenger)
    FROM p
    GROUP BY version
    ORDER BY version
$$;
REVOKE EXECUTE ON FUNCTION challenger_comparison(date, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION challenger_comparison(date, date) TO fraud_report_reader;

-- Every `fraudctl backtest` run, its report as the JSON it printed (docs/rules.md, "Backtests"):
-- what the dashboard shows as the latest backtest of a rule file.
CREATE TABLE backtest_runs (
    id             bigserial PRIMARY KEY,
    ran_at         timestamptz NOT NULL DEFAULT now(),
    ran_by         text NOT NULL DEFAULT current_user,
    rules_file     text,
    rule_set       text,
    model_version  text NOT NULL,
    threshold      double precision NOT NULL,
    from_day       date NOT NULL,
    to_day         date NOT NULL,
    payments       bigint NOT NULL,
    report         jsonb NOT NULL
);
CREATE INDEX backtest_runs_rules_file_idx ON backtest_runs (rules_file, ran_at DESC);
COMMENT ON TABLE backtest_runs IS 'fraudctl backtest''s reports: rule_set is <file stem>@<hash> of the candidate rules (NULL: the model alone).';
REVOKE ALL ON backtest_runs FROM PUBLIC;
GRANT SELECT ON backtest_runs TO fraud_report_reader;

-- fraud_list_editor may change the lists, through list_add and list_remove only (which keep the
-- audit trail): the dashboard's role is made a member for analysts who edit lists there. Created
-- as fraud_report_reader is (V5): a role is cluster-wide.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fraud_list_editor') THEN
        CREATE ROLE fraud_list_editor NOLOGIN;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN
        NULL;
    WHEN insufficient_privilege THEN
        RAISE EXCEPTION 'role fraud_list_editor does not exist and % may not create it', current_user
            USING HINT = 'Create it once as a superuser: CREATE ROLE fraud_list_editor NOLOGIN; '
                         'or migrate as a role with CREATEROLE.';
END
$$;

-- Adds the card of a stored payment (by its trans_num) to a list, by the card's keyed hash: what
-- the dashboard offers, whose role reads no card hash. False when no payment has that trans_num.
CREATE FUNCTION list_add_card_of(p_list text, p_trans_num text, p_by text, p_reason text,
                                 p_expires timestamptz)
RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    card text;
BEGIN
    SELECT cc_hash INTO card FROM payments_scored WHERE trans_num = p_trans_num;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM list_add(p_list, card, p_by, p_reason, p_expires);
    RETURN true;
END $$;
REVOKE ALL ON FUNCTION list_add_card_of(text, text, text, text, timestamptz) FROM PUBLIC;

GRANT USAGE ON SCHEMA public TO fraud_list_editor;
GRANT EXECUTE ON FUNCTION list_add(text, text, text, text, timestamptz),
                          list_remove(text, text, text, text),
                          list_add_card_of(text, text, text, text, timestamptz) TO fraud_list_editor;

-- Payments a `review` rule decided (docs/rules.md): not frauds, so never in fraud_alerts; each
-- emailed once to the review address (`fraudctl alert --review-to`), recorded here as fraud
-- alerts are: `sending` before the email goes out (a run that dies sends that same email again),
-- `sent` once the SMTP server accepted it, `failed` when it refused it for good, `suppressed`
-- when the payment was older than the alerts' age limit when first seen.
CREATE TABLE review_notices (
    trans_num    text COLLATE "C" PRIMARY KEY REFERENCES payments_scored (trans_num),
    status       text NOT NULL CHECK (status IN ('sending', 'sent', 'failed', 'suppressed')),
    message_id   text,
    recipients   text,
    run_id       text NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    accepted_at  timestamptz,
    reason       text
);
CREATE INDEX review_notices_sending_idx ON review_notices (message_id) WHERE status = 'sending';
-- The review decisions, few among the payments: what alert looks through each run.
CREATE INDEX payments_scored_review_idx ON payments_scored (trans_time, trans_num)
    WHERE decision = 'review';
COMMENT ON TABLE review_notices IS 'Payments a review rule decided, each emailed once to the review address (fraudctl alert).';
REVOKE ALL ON review_notices FROM PUBLIC;
