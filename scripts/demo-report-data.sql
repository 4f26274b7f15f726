-- Believable demo data for the morning-report dashboard: 2,000 scored payments on yesterday (in
-- the business time zone), about 1.5 % of them frauds, labelled, with their alerts, and a pipeline
-- run recorded a minute ago so that the data shows as fresh.
--
--   psql "postgres://postgres@127.0.0.1:55432/fraud_db" -v ON_ERROR_STOP=1 -f scripts/demo-report-data.sql
--
-- Run it as the database owner on a migrated fraud_db (`fraudctl migrate`), never on production:
-- the rows are invented. Re-running it adds nothing (fixed trans_nums per day, ON CONFLICT DO
-- NOTHING) and only refreshes the run's time. The rows share run_id 'demo-YYYY-MM-DD' to find them.

BEGIN;

SELECT setseed(0.42);

CREATE TEMPORARY TABLE demo_payment ON COMMIT DROP AS
WITH day AS (
    SELECT business_yesterday() AS d, business_time_zone() AS tz
),
cities (n, city, state, lat, long, pop) AS (
    VALUES (1, 'New York', 'NY', 40.71, -74.01, 8336817),
           (2, 'Los Angeles', 'CA', 34.05, -118.24, 3979576),
           (3, 'Chicago', 'IL', 41.88, -87.63, 2693976),
           (4, 'Houston', 'TX', 29.76, -95.37, 2320268),
           (5, 'Phoenix', 'AZ', 33.45, -112.07, 1680992),
           (6, 'Philadelphia', 'PA', 39.95, -75.17, 1584064),
           (7, 'Denver', 'CO', 39.74, -104.99, 727211),
           (8, 'Seattle', 'WA', 47.61, -122.33, 753675),
           (9, 'Miami', 'FL', 25.76, -80.19, 467963),
           (10, 'Atlanta', 'GA', 33.75, -84.39, 498715),
           (11, 'Minneapolis', 'MN', 44.98, -93.27, 429954),
           (12, 'Kansas City', 'MO', 39.10, -94.58, 495327),
           (13, 'Salt Lake City', 'UT', 40.76, -111.89, 200567),
           (14, 'Nashville', 'TN', 36.16, -86.78, 670820),
           (15, 'Boston', 'MA', 42.36, -71.06, 692600),
           (16, 'Albuquerque', 'NM', 35.08, -106.65, 560513)
),
-- Everyday spending is weighted towards groceries and fuel; fraud towards online shopping.
legit_categories AS (
    SELECT ARRAY['grocery_pos', 'grocery_pos', 'gas_transport', 'gas_transport', 'home', 'home',
                 'shopping_pos', 'shopping_pos', 'kids_pets', 'entertainment', 'food_dining',
                 'personal_care', 'health_fitness', 'misc_pos', 'shopping_net', 'misc_net',
                 'grocery_net', 'travel'] AS a
),
fraud_categories AS (
    SELECT ARRAY['shopping_net', 'shopping_net', 'shopping_net', 'grocery_pos', 'grocery_pos',
                 'misc_net', 'misc_net', 'shopping_pos', 'gas_transport', 'travel'] AS a
),
merchants AS (
    SELECT ARRAY['fraud_Kirlin and Sons', 'fraud_Sporer-Keebler', 'fraud_Haley Group',
                 'fraud_Johnston-Casper', 'fraud_Daugherty LLC', 'fraud_Romaguera Ltd',
                 'fraud_Reichel Inc', 'fraud_Abbott-Rogahn', 'fraud_Kuhn LLC', 'fraud_Stroman, Hudson and Erdman',
                 'fraud_Rowe-Vandervort', 'fraud_Corwin-Collins', 'fraud_Herzog Ltd', 'fraud_Schmidt and Sons'] AS a
),
draws AS (
    SELECT i,
           random() < 0.015 AS is_fraud,
           random() AS u_time, random() AS u_time2, random() AS u_time3, random() AS u_night,
           random() AS u_cat, random() AS u_city, random() AS u_merchant,
           random() AS u_amt1, random() AS u_amt2, random() AS u_score, random() AS u_miss,
           random() AS u_card, random() AS u_misc
    FROM generate_series(1, 2000) AS i
)
SELECT md5('demo ' || day.d || ' ' || draws.i) AS trans_num,
       -- Legitimate payments peak in the afternoon (a tenth spread over the day); frauds cluster late
       -- at night.
       ((day.d::timestamp + CASE
            WHEN draws.is_fraud THEN make_interval(secs => (22 + draws.u_time * 6 - CASE WHEN draws.u_time * 6 >= 2 THEN 24 ELSE 0 END) * 3600)
            WHEN draws.u_night < 0.1 THEN draws.u_time * interval '23 hours 59 minutes'
            ELSE interval '6 hours' + (draws.u_time + draws.u_time2 + draws.u_time3) / 3 * interval '17 hours 59 minutes'
        END) AT TIME ZONE day.tz) AS trans_time,
       lpad(floor(draws.u_card * 10000)::int::text, 4, '0') AS cc_last4,
       md5('demo card ' || floor(draws.u_card * 600)) AS cc_hash,
       merchants.a[1 + floor(draws.u_merchant * array_length(merchants.a, 1))::int] AS merchant,
       CASE WHEN draws.is_fraud THEN fraud_categories.a[1 + floor(draws.u_cat * array_length(fraud_categories.a, 1))::int]
            ELSE legit_categories.a[1 + floor(draws.u_cat * array_length(legit_categories.a, 1))::int]
       END AS category,
       -- Log-normal amounts: about $45 typical for legitimate payments, several hundred for frauds.
       round((CASE WHEN draws.is_fraud THEN 420 ELSE 45 END
              * exp((CASE WHEN draws.is_fraud THEN 0.6 ELSE 0.9 END)
                    * sqrt(-2 * ln(1 - draws.u_amt1)) * cos(2 * pi() * draws.u_amt2)))::numeric, 2) AS amt,
       CASE WHEN draws.u_misc < 0.5 THEN 'F' ELSE 'M' END AS gender,
       cities.city, cities.state, cities.pop AS city_pop,
       cities.lat + (draws.u_amt2 - 0.5) * 0.6 AS merch_lat,
       cities.long + (draws.u_score - 0.5) * 0.6 AS merch_long,
       round((18 + draws.u_misc * 67)::numeric, 1)::double precision AS age_years,
       round((2 + draws.u_merchant * 110)::numeric, 1)::double precision AS distance_km,
       draws.is_fraud AS is_fraud_label,
       -- The model catches most frauds and flags a few legitimate payments.
       round((CASE
            WHEN draws.is_fraud AND draws.u_miss < 0.8 THEN 0.62 + draws.u_score * 0.37
            WHEN draws.is_fraud THEN 0.08 + draws.u_score * 0.35
            WHEN draws.u_miss < 0.0015 THEN 0.5 + draws.u_score * 0.2
            ELSE draws.u_score * draws.u_score * 0.2
        END)::numeric, 4)::double precision AS fraud_probability,
       'demo-' || day.d AS run_id
FROM draws
CROSS JOIN day
CROSS JOIN legit_categories
CROSS JOIN fraud_categories
CROSS JOIN merchants
JOIN cities ON cities.n = 1 + floor(draws.u_city * 16)::int;

INSERT INTO payments_scored (trans_num, trans_time, cc_last4, cc_hash, merchant, category, amt,
                             gender, city, state, city_pop, merch_lat, merch_long, age_years,
                             distance_km, is_fraud_label, fraud_probability, predicted_fraud,
                             threshold, model_version, scorer, run_id)
SELECT trans_num, trans_time, cc_last4, cc_hash, merchant, category, amt, gender, city, state,
       city_pop, merch_lat, merch_long, age_years, distance_km, is_fraud_label, fraud_probability,
       fraud_probability >= 0.5, 0.5, 'xgb-demo', 'local', run_id
FROM demo_payment
ON CONFLICT (trans_num) DO NOTHING;

-- Every predicted fraud was e-mailed about 40 seconds after the payment.
INSERT INTO fraud_alerts (trans_num, status, message_id, recipients, run_id, recorded_at)
SELECT trans_num, 'sent', '<' || trans_num || '@fraudctl.demo>', 'fraud-team@example.com', run_id,
       trans_time + interval '40 seconds'
FROM demo_payment
WHERE fraud_probability >= 0.5
ON CONFLICT (trans_num) DO NOTHING;

INSERT INTO pipeline_runs (run_id, stage, records, recorded_at)
SELECT run_id, 'load', count(*), now() - interval '1 minute'
FROM demo_payment
GROUP BY run_id
ON CONFLICT (run_id, stage) DO UPDATE SET recorded_at = EXCLUDED.recorded_at;

COMMIT;
