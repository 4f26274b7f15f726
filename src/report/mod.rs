//! `fraudctl report`: one business day's payments and frauds, from `fraud_report_for_day` (the
//! function behind the view `v_daily_fraud_report`), with the analysts' verdicts on the day's
//! alerts (`v_alert_verdict_daily`, `v_alert_verdicts_latest`: migrations/V11__verdicts.sql).

mod challenger;

use std::io::Write;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use clap::{Args, ValueEnum};
use postgres::Client;
use serde::Serialize;

use crate::db::DbArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned text for people.
    Table,
    /// One row per payment, with a header line.
    Csv,
    /// A document with the summary and the rows.
    Json,
}

/// Options of `fraudctl report`.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub db: DbArgs,

    /// Business day to report (YYYY-MM-DD) [default: yesterday in the business time zone].
    #[arg(long, env = "FRAUDCTL_REPORT_DAY")]
    pub day: Option<NaiveDate>,

    /// Output format.
    #[arg(long, env = "FRAUDCTL_REPORT_FORMAT", value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// List every payment of the day, not only the predicted frauds.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub day: NaiveDate,
    pub time_zone: String,
    pub payments: i64,
    pub predicted_frauds: i64,
    pub labelled_frauds: i64,
    pub amount: f64,
    pub amount_at_risk: f64,
    pub alerts_sent: i64,
    /// Whether the pipeline saw the day: a run recorded, or a payment captured, before it ended.
    /// A stack first started later has nothing to say of it (even of payments it captured later
    /// stamped with that day).
    pub seen: bool,
    pub verdicts: VerdictFigures,
    pub payment_to_email: Latency,
    /// With a challenger in shadow: how it compares with the champion (the day, the week).
    pub challengers: Vec<challenger::Comparison>,
}

/// How soon the day's alerts reached the SMTP server after their payment (alert_latency_for_day).
#[derive(Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Alerts sent with their acceptance time.
    pub alerts: i64,
    pub p50_seconds: Option<f64>,
    pub p95_seconds: Option<f64>,
    pub max_seconds: Option<f64>,
}

/// The analysts' verdicts on the day's sent alerts (the latest verdict of each counting).
#[derive(Debug, Default, PartialEq, Serialize)]
pub struct VerdictFigures {
    /// Alerts with a verdict.
    pub given: i64,
    pub confirmed_frauds: i64,
    /// Confirmed frauds / alerts with a verdict; none without a verdict.
    pub confirmed_precision: Option<f64>,
    /// Sent alerts without a verdict.
    pub pending: i64,
    /// From the alert's sending to its first verdict.
    pub median_minutes_to_verdict: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Row {
    pub local_time: String,
    pub trans_num: String,
    pub card: String,
    pub merchant: String,
    pub category: String,
    pub amt: f64,
    pub place: String,
    pub fraud_probability: f64,
    pub predicted_fraud: bool,
    pub is_fraud_label: Option<bool>,
    pub alert_status: Option<String>,
    /// The analyst's verdict in force: `fraud` or `not_fraud`.
    pub verdict: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub summary: Summary,
    pub rows: Vec<Row>,
}

pub fn build(args: &ReportArgs) -> Result<Report> {
    let mut client = args.db.connect()?;
    let mut summary = summary(&mut client, args.day)?;
    summary.verdicts = verdict_figures(&mut client, summary.day)?;
    summary.payment_to_email = latency(&mut client, summary.day)?;
    summary.challengers = challenger::compare(&mut client, summary.day)?;
    let rows = rows(&mut client, summary.day, args.all)?;
    Ok(Report { summary, rows })
}

/// The day's headline figures (the verdicts left empty).
fn summary(client: &mut Client, day: Option<NaiveDate>) -> Result<Summary> {
    let s = client
        .query_one(
            "WITH d AS (SELECT day, (day + 1)::timestamp AT TIME ZONE business_time_zone() AS ends
                        FROM coalesce($1::date, business_yesterday()) AS day)
             SELECT d.day, business_time_zone(), count(r.trans_num),
                    count(*) FILTER (WHERE r.predicted_fraud),
                    count(*) FILTER (WHERE r.is_fraud_label),
                    coalesce(sum(r.amt), 0)::float8,
                    coalesce(sum(r.amt) FILTER (WHERE r.predicted_fraud), 0)::float8,
                    count(*) FILTER (WHERE r.alert_status = 'sent'),
                    EXISTS (SELECT 1 FROM pipeline_runs WHERE recorded_at < d.ends)
                        OR EXISTS (SELECT 1 FROM payments_scored WHERE captured_at < d.ends)
             FROM d LEFT JOIN LATERAL fraud_report_for_day(d.day) r ON true
             GROUP BY d.day, d.ends",
            &[&day],
        )
        .context("querying fraud_report_for_day (has `fraudctl migrate` run?)")?;
    Ok(Summary {
        day: s.get(0),
        time_zone: s.get(1),
        payments: s.get(2),
        predicted_frauds: s.get(3),
        labelled_frauds: s.get(4),
        amount: s.get(5),
        amount_at_risk: s.get(6),
        alerts_sent: s.get(7),
        seen: s.get(8),
        verdicts: VerdictFigures::default(),
        payment_to_email: Latency::default(),
        challengers: Vec::new(),
    })
}

fn latency(client: &mut Client, day: NaiveDate) -> Result<Latency> {
    let r = client
        .query_one("SELECT * FROM alert_latency_for_day($1)", &[&day])
        .context("querying alert_latency_for_day (has `fraudctl migrate` run?)")?;
    Ok(Latency {
        alerts: r.get(0),
        p50_seconds: r.get(1),
        p95_seconds: r.get(2),
        max_seconds: r.get(3),
    })
}

/// The analysts' verdicts on the day's alerts, as the dashboard shows them.
fn verdict_figures(client: &mut Client, day: NaiveDate) -> Result<VerdictFigures> {
    let row = client
        .query_opt(
            "SELECT verdicts, confirmed_frauds, confirmed_precision, pending,
                    median_seconds_to_verdict / 60
             FROM v_alert_verdict_daily WHERE business_day = $1",
            &[&day],
        )
        .context("querying v_alert_verdict_daily (has `fraudctl migrate` run?)")?;
    Ok(
        row.map_or_else(VerdictFigures::default, |r| VerdictFigures {
            given: r.get(0),
            confirmed_frauds: r.get(1),
            confirmed_precision: r.get(2),
            pending: r.get(3),
            median_minutes_to_verdict: r.get(4),
        }),
    )
}

/// The day's predicted frauds (every payment with `all`), each with its verdict in force.
fn rows(client: &mut Client, day: NaiveDate, all: bool) -> Result<Vec<Row>> {
    let rows = client
        .query(
            "SELECT to_char(r.local_time, 'YYYY-MM-DD HH24:MI:SS'), r.trans_num, r.card, r.merchant,
                    r.category, r.amt::float8, r.city || ', ' || r.state, r.fraud_probability,
                    r.predicted_fraud, r.is_fraud_label, r.alert_status, v.verdict
             FROM fraud_report_for_day($1) r
             LEFT JOIN v_alert_verdicts_latest v ON v.trans_num = r.trans_num
             WHERE r.predicted_fraud OR $2
             ORDER BY r.trans_time, r.trans_num",
            &[&day, &all],
        )
        .context("querying fraud_report_for_day")?;
    Ok(rows
        .iter()
        .map(|r| Row {
            local_time: r.get(0),
            trans_num: r.get(1),
            card: r.get(2),
            merchant: r.get(3),
            category: r.get(4),
            amt: r.get(5),
            place: r.get(6),
            fraud_probability: r.get(7),
            predicted_fraud: r.get(8),
            is_fraud_label: r.get(9),
            alert_status: r.get(10),
            verdict: r.get(11),
        })
        .collect())
}

impl Row {
    /// The row with `clean` applied to each of its texts.
    fn neutralised(&self, clean: fn(&str) -> String) -> Row {
        Row {
            local_time: clean(&self.local_time),
            trans_num: clean(&self.trans_num),
            card: clean(&self.card),
            merchant: clean(&self.merchant),
            category: clean(&self.category),
            place: clean(&self.place),
            alert_status: self.alert_status.as_deref().map(clean),
            verdict: self.verdict.as_deref().map(clean),
            ..*self
        }
    }
}

/// A text cell a spreadsheet would run as a formula (it starts with `=`, `+`, `-`, `@`, a tab
/// or a carriage return) gets a leading `'`, which makes it text (OWASP's CSV-injection rule).
/// The digest attaches this CSV for people to open.
fn for_spreadsheet(cell: &str) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell.to_string()
    }
}

/// A text shown on a terminal: control characters (CR, LF, escape sequences…) become `?`, so
/// a merchant name cannot add lines to the table or drive the terminal.
fn for_terminal(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

pub fn write(report: &Report, format: Format, out: &mut dyn Write) -> Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, report)?;
            writeln!(out)?;
            Ok(())
        }
        Format::Csv => write_csv(report, out),
        Format::Table => write_table(report, out),
    }
}

/// One row a payment, a header line first (also when there is none).
fn write_csv(report: &Report, out: &mut dyn Write) -> Result<()> {
    let mut w = csv::Writer::from_writer(out);
    for row in &report.rows {
        w.serialize(row.neutralised(for_spreadsheet))?;
    }
    if report.rows.is_empty() {
        w.write_record([
            "local_time",
            "trans_num",
            "card",
            "merchant",
            "category",
            "amt",
            "place",
            "fraud_probability",
            "predicted_fraud",
            "is_fraud_label",
            "alert_status",
            "verdict",
        ])?;
    }
    w.flush()?;
    Ok(())
}

/// The summary, then the rows, aligned for a terminal.
fn write_table(report: &Report, out: &mut dyn Write) -> Result<()> {
    write_summary(&report.summary, out)?;
    if report.rows.is_empty() {
        writeln!(out, "\nNo payments to list for this day.")?;
        return Ok(());
    }
    writeln!(out)?;
    writeln!(
        out,
        "{:<19}  {:<9}  {:>10}  {:<14}  {:<32}  {:>5}  {:<5}  {:<10}  verdict",
        "local time", "card", "amount", "category", "merchant", "p", "label", "alert"
    )?;
    for r in report.rows.iter().map(|r| r.neutralised(for_terminal)) {
        let label = match r.is_fraud_label {
            Some(true) => "fraud",
            Some(false) => "legit",
            None => "-",
        };
        let merchant: String = r.merchant.chars().take(32).collect();
        writeln!(
            out,
            "{:<19}  {:<9}  {:>10.2}  {:<14}  {:<32}  {:>5.3}  {:<5}  {:<10}  {}",
            r.local_time,
            r.card,
            r.amt,
            r.category,
            merchant,
            r.fraud_probability,
            label,
            r.alert_status.as_deref().unwrap_or("-"),
            verdict_cell(&r)
        )?;
    }
    Ok(())
}

fn write_summary(s: &Summary, out: &mut dyn Write) -> Result<()> {
    let rate = if s.payments > 0 {
        100.0 * s.predicted_frauds as f64 / s.payments as f64
    } else {
        0.0
    };
    writeln!(out, "Fraud report for {} ({})", s.day, s.time_zone)?;
    if !s.seen {
        writeln!(
            out,
            "  the pipeline never saw this day: no run was recorded, no payment captured, before it ended"
        )?;
    }
    writeln!(
        out,
        "  payments          {:>12}   amount         {:>14.2}",
        s.payments, s.amount
    )?;
    writeln!(
        out,
        "  predicted frauds  {:>12}   amount at risk {:>14.2}",
        s.predicted_frauds, s.amount_at_risk
    )?;
    writeln!(
        out,
        "  fraud rate        {:>11.2}%   alerts sent    {:>14}",
        rate, s.alerts_sent
    )?;
    writeln!(out, "  labelled frauds   {:>12}", s.labelled_frauds)?;
    let l = &s.payment_to_email;
    if let (Some(p50), Some(p95), Some(max)) = (l.p50_seconds, l.p95_seconds, l.max_seconds) {
        writeln!(
            out,
            "  payment to email  median {p50:.1} s, p95 {p95:.1} s, slowest {max:.1} s ({} alerts sent)",
            l.alerts
        )?;
    }
    let v = &s.verdicts;
    let precision = v
        .confirmed_precision
        .map_or("-".into(), |p| format!("{:.1}%", 100.0 * p));
    let median = v
        .median_minutes_to_verdict
        .map_or("-".into(), |m| format!("{m:.0} min"));
    writeln!(
        out,
        "  analyst verdicts  {} given ({} confirmed fraud), {} pending; analyst-confirmed precision {precision}; median time to verdict {median}",
        v.given, v.confirmed_frauds, v.pending
    )?;
    challenger::write(&s.challengers, out)
}

/// A row's verdict as the table shows it: `pending` for a sent alert without one.
fn verdict_cell(r: &Row) -> &str {
    match (r.verdict.as_deref(), r.alert_status.as_deref()) {
        (Some("fraud"), _) => "fraud",
        (Some("not_fraud"), _) => "not fraud",
        (Some(other), _) => other,
        (None, Some("sent")) => "pending",
        (None, _) => "-",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report_of(merchant: &str) -> Report {
        Report {
            summary: Summary {
                day: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
                time_zone: "UTC".into(),
                payments: 1,
                predicted_frauds: 1,
                labelled_frauds: 0,
                amount: 5.0,
                amount_at_risk: 5.0,
                alerts_sent: 0,
                seen: true,
                verdicts: VerdictFigures::default(),
                payment_to_email: Latency::default(),
                challengers: Vec::new(),
            },
            rows: vec![Row {
                local_time: "2026-11-30 10:00:00".into(),
                trans_num: "t1".into(),
                card: "**** 1234".into(),
                merchant: merchant.into(),
                category: "misc_net".into(),
                amt: -5.0,
                place: "Pembroke, NC".into(),
                fraud_probability: 0.9,
                predicted_fraud: true,
                is_fraud_label: None,
                alert_status: Some("sent".into()),
                verdict: None,
            }],
        }
    }

    fn written(report: &Report, format: Format) -> String {
        let mut out = Vec::new();
        write(report, format, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn csv_cells_that_a_spreadsheet_would_run_are_made_text() {
        for formula in [
            "=HYPERLINK(\"http://x\")",
            "+1+1",
            "-2+3",
            "@SUM(A1)",
            "\tx",
        ] {
            let csv = written(&report_of(formula), Format::Csv);
            let cell = csv
                .lines()
                .nth(1)
                .unwrap()
                .split(',')
                .nth(3)
                .unwrap()
                .to_string();
            assert!(
                cell.starts_with('\'') || cell.starts_with("\"'"),
                "{formula:?} written as {cell:?}"
            );
        }
        // Numbers stay numbers; ordinary names stay as they are.
        let csv = written(&report_of("fraud_Kub and Mann"), Format::Csv);
        assert!(
            csv.contains(",fraud_Kub and Mann,") && csv.contains(",-5.0,"),
            "{csv}"
        );
    }

    #[test]
    fn the_table_shows_no_control_character_from_the_data() {
        let table = written(&report_of("evil\r\nFAKE ROW\u{1b}[2J"), Format::Table);
        assert!(
            !table.contains('\r') && !table.contains('\u{1b}'),
            "{table:?}"
        );
        assert_eq!(table.lines().filter(|l| l.contains("FAKE ROW")).count(), 1);
        assert!(table.contains("evil??FAKE ROW?[2J"), "{table}");
    }
}
