-- fraudctl load, step 2: staging → payments_scored in one statement. $1 is the run id; each
-- row's captured_at is its payment's capture time (else its batch's, raw.jsonl's created_at).
-- A row whose data is unchanged is left
-- alone (run_id and times included), so re-running a run changes nothing; the result is the
-- count of inserted and of updated rows. captured_at keeps the first capture of a payment (a
-- payment served twice is history from its first capture on: docs/feature-spec.md), and so do
-- the facts the card history reads: a row whose time, card, amount, merchant's place or category
-- differ is not updated (conflicts.sql names them).
WITH upserted AS (
    INSERT INTO payments_scored AS p (
        trans_num, trans_time, cc_last4, cc_hash, merchant, category, amt, gender, city, state,
        city_pop, merch_lat, merch_long, age_years, distance_km, is_fraud_label,
        fraud_probability, predicted_fraud, threshold, model_version, scorer, needs_rescore,
        reasons, features, rule_set, decision, decided_by_rule, rules_matched,
        challenger_model_version, challenger_probability, challenger_predicted_fraud, run_id,
        captured_at)
    SELECT trans_num, trans_time, cc_last4, cc_hash, merchant, category,
           amt, gender, city, state, city_pop,
           merch_lat, merch_long, age_years, distance_km, is_fraud_label,
           fraud_probability, predicted_fraud, threshold, model_version, scorer, needs_rescore,
           reasons, features, rule_set, decision, decided_by_rule, rules_matched,
           challenger_model_version, challenger_probability, challenger_predicted_fraud, $1,
           captured_at
    FROM payments_staging
    ON CONFLICT (trans_num) DO UPDATE
       SET (trans_time, cc_last4, cc_hash, merchant, category, amt, gender, city, state,
            city_pop, merch_lat, merch_long, age_years, distance_km, is_fraud_label,
            fraud_probability, predicted_fraud, threshold, model_version, scorer,
            needs_rescore, reasons, features, rule_set, decision, decided_by_rule, rules_matched,
            challenger_model_version, challenger_probability, challenger_predicted_fraud,
            run_id, captured_at, updated_at)
         = (EXCLUDED.trans_time, EXCLUDED.cc_last4, EXCLUDED.cc_hash, EXCLUDED.merchant,
            EXCLUDED.category, EXCLUDED.amt, EXCLUDED.gender, EXCLUDED.city, EXCLUDED.state,
            EXCLUDED.city_pop, EXCLUDED.merch_lat, EXCLUDED.merch_long, EXCLUDED.age_years,
            EXCLUDED.distance_km, EXCLUDED.is_fraud_label, EXCLUDED.fraud_probability,
            EXCLUDED.predicted_fraud, EXCLUDED.threshold, EXCLUDED.model_version,
            EXCLUDED.scorer, EXCLUDED.needs_rescore, EXCLUDED.reasons, EXCLUDED.features,
            EXCLUDED.rule_set, EXCLUDED.decision, EXCLUDED.decided_by_rule, EXCLUDED.rules_matched,
            EXCLUDED.challenger_model_version, EXCLUDED.challenger_probability,
            EXCLUDED.challenger_predicted_fraud,
            EXCLUDED.run_id, least(p.captured_at, EXCLUDED.captured_at), now())
     WHERE (p.trans_time, p.cc_hash, p.amt, p.merch_lat, p.merch_long, p.category)
           IS NOT DISTINCT FROM
           (EXCLUDED.trans_time, EXCLUDED.cc_hash, EXCLUDED.amt, EXCLUDED.merch_lat,
            EXCLUDED.merch_long, EXCLUDED.category)
       AND ((p.trans_time, p.cc_last4, p.cc_hash, p.merchant, p.category, p.amt, p.gender,
            p.city, p.state, p.city_pop, p.merch_lat, p.merch_long, p.age_years, p.distance_km,
            p.is_fraud_label, p.fraud_probability, p.predicted_fraud, p.threshold,
            p.model_version, p.scorer, p.needs_rescore, p.reasons, p.features, p.rule_set,
            p.decision, p.decided_by_rule, p.rules_matched, p.challenger_model_version,
            p.challenger_probability, p.challenger_predicted_fraud)
           IS DISTINCT FROM
           (EXCLUDED.trans_time, EXCLUDED.cc_last4, EXCLUDED.cc_hash, EXCLUDED.merchant,
            EXCLUDED.category, EXCLUDED.amt, EXCLUDED.gender, EXCLUDED.city, EXCLUDED.state,
            EXCLUDED.city_pop, EXCLUDED.merch_lat, EXCLUDED.merch_long, EXCLUDED.age_years,
            EXCLUDED.distance_km, EXCLUDED.is_fraud_label, EXCLUDED.fraud_probability,
            EXCLUDED.predicted_fraud, EXCLUDED.threshold, EXCLUDED.model_version,
            EXCLUDED.scorer, EXCLUDED.needs_rescore, EXCLUDED.reasons, EXCLUDED.features,
            EXCLUDED.rule_set, EXCLUDED.decision, EXCLUDED.decided_by_rule, EXCLUDED.rules_matched,
            EXCLUDED.challenger_model_version, EXCLUDED.challenger_probability,
            EXCLUDED.challenger_predicted_fraud)
        OR EXCLUDED.captured_at < p.captured_at)
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM upserted
