-- How soon the day's frauds were emailed: for each alert sent about a payment of the business day,
-- from the payment's time (current_time: the API stamps it when it serves the payment) to the
-- SMTP server's acceptance (fraud_alerts.accepted_at, V16). Alerts recorded before V16 carry the
-- time they were recorded. The dashboard and `fraudctl report` (the morning digest) show it.
CREATE FUNCTION alert_latency_for_day(report_day date)
RETURNS TABLE (alerts bigint, p50_seconds double precision, p95_seconds double precision,
               max_seconds double precision)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT count(*),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY l.seconds),
           percentile_cont(0.95) WITHIN GROUP (ORDER BY l.seconds),
           max(l.seconds)
    FROM (SELECT extract(epoch FROM a.accepted_at - r.trans_time)::double precision AS seconds
          FROM fraud_report_for_day(report_day) r
          JOIN fraud_alerts a USING (trans_num)
          WHERE a.status = 'sent' AND a.accepted_at IS NOT NULL) l
$$;
REVOKE EXECUTE ON FUNCTION alert_latency_for_day(date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION alert_latency_for_day(date) TO fraud_report_reader;
