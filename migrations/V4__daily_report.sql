-- The morning report. "Yesterday" is computed in the business time zone held in
-- fraudctl_settings (set by `fraudctl migrate --business-time-zone`, default UTC).
CREATE TABLE fraudctl_settings (
    key         text PRIMARY KEY,
    value       text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO fraudctl_settings (key, value) VALUES ('business_time_zone', 'UTC');

CREATE FUNCTION business_time_zone() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT value FROM fraudctl_settings WHERE key = 'business_time_zone'), 'UTC')
$$;

CREATE FUNCTION business_yesterday() RETURNS date
LANGUAGE sql STABLE AS $$
    SELECT (now() AT TIME ZONE business_time_zone())::date - 1
$$;

-- All payments of one business day, with their scores, labels and alert state.
CREATE FUNCTION fraud_report_for_day(report_day date)
RETURNS TABLE (
    business_day       date,
    trans_num          text,
    trans_time         timestamptz,
    local_time         timestamp,
    card               text,
    merchant           text,
    category           text,
    amt                numeric,
    city               text,
    state              text,
    merch_lat          double precision,
    merch_long         double precision,
    distance_km        double precision,
    age_years          double precision,
    fraud_probability  double precision,
    predicted_fraud    boolean,
    is_fraud_label     boolean,
    model_version      text,
    scorer             text,
    run_id             text,
    alert_status       text,
    alerted_at         timestamptz
)
-- SECURITY DEFINER: a reporting role granted EXECUTE on it reads the report, not the table.
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT report_day,
           p.trans_num,
           p.trans_time,
           p.trans_time AT TIME ZONE tz.name,
           '**** ' || p.cc_last4,
           p.merchant,
           p.category,
           p.amt,
           p.city,
           p.state,
           p.merch_lat,
           p.merch_long,
           p.distance_km,
           p.age_years,
           p.fraud_probability,
           p.predicted_fraud,
           p.is_fraud_label,
           p.model_version,
           p.scorer,
           p.run_id,
           a.status,
           a.recorded_at
    FROM (SELECT business_time_zone() AS name) tz
    JOIN payments_scored p
      ON p.trans_time >= (report_day::timestamp AT TIME ZONE tz.name)
     AND p.trans_time < ((report_day + 1)::timestamp AT TIME ZONE tz.name)
    LEFT JOIN fraud_alerts a ON a.trans_num = p.trans_num
    ORDER BY p.trans_time, p.trans_num
$$;

CREATE VIEW v_daily_fraud_report AS
    SELECT * FROM fraud_report_for_day(business_yesterday());

COMMENT ON VIEW v_daily_fraud_report IS 'Yesterday''s payments and frauds, yesterday in the business time zone.';

REVOKE EXECUTE ON FUNCTION fraud_report_for_day(date) FROM PUBLIC;
