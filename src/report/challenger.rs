//! The digest's champion-and-challenger comparison (docs/rules.md, "A challenger model"):
//! `challenger_comparison` over the report's day and the week ending with it, for each
//! challenger that scored payments then.

use std::io::Write;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use postgres::Client;
use serde::Serialize;

/// One challenger against the champion over a period.
#[derive(Debug, Serialize)]
pub struct Comparison {
    /// `day` (the report's) or `7 days` (ending with it).
    pub period: &'static str,
    pub days: i32,
    pub challenger: String,
    pub champions: Vec<String>,
    pub payments: i64,
    /// Share of the payments both models predicted alike.
    pub agreement: f64,
    pub both_alert: i64,
    pub champion: ModelFigures,
    pub challenger_model: ModelFigures,
    /// Analyst-confirmed frauds (verdicts exist for the champion's sent alerts), and those the
    /// challenger predicted too.
    pub confirmed_frauds: i64,
    pub confirmed_caught_by_challenger: i64,
}

/// One model's predictions over the period (the champion's at its threshold, before rules).
#[derive(Debug, Serialize)]
pub struct ModelFigures {
    pub alerts: i64,
    pub alerts_per_day: f64,
    /// Against the source's labels, over the labelled payments (none when undefined).
    pub precision: Option<f64>,
    pub recall: Option<f64>,
}

impl ModelFigures {
    fn of(alerts: i64, days: i32, (tp, fp, fn_): (i64, i64, i64)) -> Self {
        let share = |n: i64, of: i64| (of > 0).then(|| n as f64 / of as f64);
        ModelFigures {
            alerts,
            alerts_per_day: alerts as f64 / f64::from(days),
            precision: share(tp, tp + fp),
            recall: share(tp, tp + fn_),
        }
    }
}

/// The comparisons of the day and of the week ending with it.
pub fn compare(client: &mut Client, day: NaiveDate) -> Result<Vec<Comparison>> {
    let mut all = Vec::new();
    for (period, from) in [("day", day), ("7 days", day - chrono::Days::new(6))] {
        let rows = client
            .query(
                "SELECT challenger_model_version, champion_model_versions, days, payments,
                        champion_alerts, challenger_alerts, both_alert, agreement,
                        champion_true_pos, champion_false_pos, champion_false_neg,
                        challenger_true_pos, challenger_false_pos, challenger_false_neg,
                        confirmed_frauds, confirmed_caught_by_challenger
                 FROM challenger_comparison($1, $2)",
                &[&from, &day],
            )
            .context("querying challenger_comparison (has `fraudctl migrate` run?)")?;
        all.extend(rows.iter().map(|r| {
            let days: i32 = r.get(2);
            Comparison {
                period,
                days,
                challenger: r.get(0),
                champions: r.get(1),
                payments: r.get(3),
                agreement: r.get(7),
                both_alert: r.get(6),
                champion: ModelFigures::of(r.get(4), days, (r.get(8), r.get(9), r.get(10))),
                challenger_model: ModelFigures::of(
                    r.get(5),
                    days,
                    (r.get(11), r.get(12), r.get(13)),
                ),
                confirmed_frauds: r.get(14),
                confirmed_caught_by_challenger: r.get(15),
            }
        }));
    }
    Ok(all)
}

/// The comparisons as the table's section (nothing without a challenger).
pub fn write(comparisons: &[Comparison], out: &mut dyn Write) -> Result<()> {
    if comparisons.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "  champion and challenger (predictions at each model's threshold, before rules; never alerted):"
    )?;
    let percent = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.1}%", 100.0 * v));
    for c in comparisons {
        writeln!(
            out,
            "    {:<6} {} against {}: {} payments, agreement {:.2}%, {} alerted by both",
            c.period,
            c.challenger,
            c.champions.join(", "),
            c.payments,
            100.0 * c.agreement,
            c.both_alert
        )?;
        for (who, m) in [
            ("champion", &c.champion),
            ("challenger", &c.challenger_model),
        ] {
            writeln!(
                out,
                "      {who:<10} {:>7.1} alerts a day  precision {:>6}  recall {:>6}",
                m.alerts_per_day,
                percent(m.precision),
                percent(m.recall)
            )?;
        }
        writeln!(
            out,
            "      analyst-confirmed frauds {}, of which the challenger predicted {}",
            c.confirmed_frauds, c.confirmed_caught_by_challenger
        )?;
    }
    Ok(())
}
