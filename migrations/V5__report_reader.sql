-- What the morning-report dashboard reads, and the read-only role it reads it through.
--
-- The dashboard shows any business day, not only yesterday, so beside the view
-- v_daily_fraud_report it gets per-day aggregates (summary, by hour, by category, by amount band),
-- all computed from fraud_report_for_day so that every figure agrees with the report's rows, and
-- a freshness view over pipeline_runs. The role fraud_report_reader may read these and nothing
-- else: no table privileges. A LOGIN role made a member of it by whoever deploys (see
-- dashboard/README.md) is what the dashboard connects as.

-- The view v_daily_fraud_report calls business_yesterday() with the privileges of whoever selects
-- from it, and that reads fraudctl_settings: a role without table privileges was refused
-- ("permission denied for table fraudctl_settings"). Reading the one setting as the owner fixes
-- that without granting the table.
CREATE OR REPLACE FUNCTION business_time_zone() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT coalesce((SELECT value FROM fraudctl_settings WHERE key = 'business_time_zone'), 'UTC')
$$;

-- The aggregates below read only through fraud_report_for_day (itself SECURITY DEFINER), so they
-- run with the caller's rights: a caller needs EXECUTE on both.

-- The day's headline figures. Frauds are the model's predictions (what alerts are sent for); the
-- source labels, where present, only measure the model (confusion counts over labelled payments).
-- fraud_rate is NULL on a day without payments.
CREATE FUNCTION fraud_report_summary(report_day date)
RETURNS TABLE (
    business_day       date,
    time_zone          text,
    payments           bigint,
    predicted_frauds   bigint,
    fraud_rate         double precision,
    amount             numeric,
    amount_at_risk     numeric,
    alerts_sent        bigint,
    labelled_payments  bigint,
    labelled_frauds    bigint,
    true_positives     bigint,
    false_positives    bigint,
    false_negatives    bigint,
    true_negatives     bigint
)
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
    SELECT report_day,
           business_time_zone(),
           count(*),
           count(*) FILTER (WHERE r.predicted_fraud),
           (count(*) FILTER (WHERE r.predicted_fraud))::double precision / nullif(count(*), 0),
           coalesce(sum(r.amt), 0),
           coalesce(sum(r.amt) FILTER (WHERE r.predicted_fraud), 0),
           count(*) FILTER (WHERE r.alert_status = 'sent'),
           count(r.is_fraud_label),
           count(*) FILTER (WHERE r.is_fraud_label),
           count(*) FILTER (WHERE r.predicted_fraud AND r.is_fraud_label),
           count(*) FILTER (WHERE r.predicted_fraud AND NOT r.is_fraud_label),
           count(*) FILTER (WHERE NOT r.predicted_fraud AND r.is_fraud_label),
           count(*) FILTER (WHERE NOT r.predicted_fraud AND NOT r.is_fraud_label)
    FROM fraud_report_for_day(report_day) r
$$;

-- Payments and predicted frauds per hour of the business day's local time, all 24 hours (a
-- 25-hour day at the end of daylight saving time counts its repeated hour once, in that hour).
CREATE FUNCTION fraud_report_by_hour(report_day date)
RETURNS TABLE (hour integer, payments bigint, frauds bigint, amount numeric, amount_at_risk numeric)
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
    SELECT h.hour,
           count(r.trans_num),
           count(r.trans_num) FILTER (WHERE r.predicted_fraud),
           coalesce(sum(r.amt), 0),
           coalesce(sum(r.amt) FILTER (WHERE r.predicted_fraud), 0)
    FROM generate_series(0, 23) AS h(hour)
    LEFT JOIN fraud_report_for_day(report_day) r ON extract(hour FROM r.local_time) = h.hour
    GROUP BY h.hour
    ORDER BY h.hour
$$;

-- Payments and predicted frauds per merchant category, most frauds first.
CREATE FUNCTION fraud_report_by_category(report_day date)
RETURNS TABLE (category text, payments bigint, frauds bigint, amount numeric, amount_at_risk numeric)
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
    SELECT r.category,
           count(*),
           count(*) FILTER (WHERE r.predicted_fraud),
           sum(r.amt),
           coalesce(sum(r.amt) FILTER (WHERE r.predicted_fraud), 0)
    FROM fraud_report_for_day(report_day) r
    GROUP BY r.category
    ORDER BY 3 DESC, 2 DESC, 1
$$;

-- The amount distribution of predicted frauds and legitimate payments, in fixed bands (so a day of
-- a million payments is still a dozen rows). Every band is returned, empty ones with zeros.
CREATE FUNCTION fraud_report_by_amount_band(report_day date)
RETURNS TABLE (band_order integer, band text, min_amt numeric, payments bigint, frauds bigint, legit bigint)
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
    WITH bands (band_order, band, min_amt, max_amt) AS (
        VALUES (1, '< $10', 0, 10),
               (2, '$10–25', 10, 25),
               (3, '$25–50', 25, 50),
               (4, '$50–100', 50, 100),
               (5, '$100–250', 100, 250),
               (6, '$250–500', 250, 500),
               (7, '$500–1,000', 500, 1000),
               (8, '≥ $1,000', 1000, NULL)
    )
    SELECT b.band_order,
           b.band,
           b.min_amt::numeric,
           count(r.trans_num),
           count(r.trans_num) FILTER (WHERE r.predicted_fraud),
           count(r.trans_num) FILTER (WHERE NOT r.predicted_fraud)
    FROM bands b
    LEFT JOIN fraud_report_for_day(report_day) r
      ON r.amt >= b.min_amt AND (b.max_amt IS NULL OR r.amt < b.max_amt)
    GROUP BY b.band_order, b.band, b.min_amt
    ORDER BY b.band_order
$$;

-- Data freshness, always one row: the last successful run (the last run whose load stage was
-- recorded), the last record of any stage, the newest payment, and the database's clock to measure
-- their age against. The columns are NULL when the pipeline has never run.
CREATE VIEW v_pipeline_freshness AS
    SELECT last_load.run_id                                  AS last_run_id,
           last_load.recorded_at                             AS last_run_at,
           last_load.records                                 AS last_run_records,
           (SELECT max(recorded_at) FROM pipeline_runs)      AS last_recorded_at,
           (SELECT max(trans_time) FROM payments_scored)     AS last_payment_at,
           now()                                             AS checked_at
    FROM (SELECT 1) AS one
    LEFT JOIN LATERAL (
        SELECT run_id, recorded_at, records
        FROM pipeline_runs
        WHERE stage = 'load'
        ORDER BY recorded_at DESC
        LIMIT 1
    ) AS last_load ON true;

COMMENT ON VIEW v_pipeline_freshness IS 'When the pipeline last loaded data (one row; NULLs when it never ran).';

REVOKE EXECUTE ON FUNCTION business_time_zone() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION fraud_report_summary(date) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION fraud_report_by_hour(date) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION fraud_report_by_category(date) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION fraud_report_by_amount_band(date) FROM PUBLIC;

-- fraud_report_reader reads the report (views and report functions), no table. Roles are
-- cluster-wide: another database of the same cluster may have created it already, or be creating
-- it right now (then the catalog's unique index refuses the second one). No COMMENT ON ROLE for the
-- same reason: two databases migrating at once would update the same shared catalog row.
-- Creating it needs CREATEROLE; a deployment that migrates as a plain owner creates the role
-- beforehand (docker-compose's postgres init does).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fraud_report_reader') THEN
        CREATE ROLE fraud_report_reader NOLOGIN;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN
        NULL;
    WHEN insufficient_privilege THEN
        RAISE EXCEPTION 'role fraud_report_reader does not exist and % may not create it', current_user
            USING HINT = 'Create it once as a superuser: CREATE ROLE fraud_report_reader NOLOGIN; '
                         'or migrate as a role with CREATEROLE.';
END
$$;

GRANT USAGE ON SCHEMA public TO fraud_report_reader;
GRANT SELECT ON v_daily_fraud_report, v_pipeline_freshness TO fraud_report_reader;
GRANT EXECUTE ON FUNCTION
    business_time_zone(),
    business_yesterday(),
    fraud_report_for_day(date),
    fraud_report_summary(date),
    fraud_report_by_hour(date),
    fraud_report_by_category(date),
    fraud_report_by_amount_band(date)
TO fraud_report_reader;
