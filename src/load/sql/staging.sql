-- fraudctl load, step 1: the session's staging table, filled by binary COPY of the columns of
-- FIELDS in src/load/rows.rs (a unit test holds this list and that one equal). Dropped at commit.
CREATE TEMPORARY TABLE payments_staging (
    trans_num text, trans_time timestamptz, cc_last4 text, cc_hash text, merchant text,
    category text, amt numeric(14, 2), gender text, city text, state text, city_pop int8,
    merch_lat float8, merch_long float8, age_years float8, distance_km float8,
    is_fraud_label bool, fraud_probability float8, predicted_fraud bool, threshold float8,
    model_version text, scorer text, needs_rescore bool, reasons jsonb, features float8[],
    rule_set text, decision text, decided_by_rule text, rules_matched text[],
    challenger_model_version text, challenger_probability float8, challenger_predicted_fraud bool,
    captured_at timestamptz
) ON COMMIT DROP
