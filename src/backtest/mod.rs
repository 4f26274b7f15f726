//! `fraudctl backtest`: what a candidate rule set and model would have decided over a stored
//! period (docs/rules.md, "Backtests"). Point in time: each payment is decided from the model
//! inputs `load` stored with it (`payments_scored.features`, the card history it had when it was
//! scored), re-scored by the candidate model, its rules evaluated as `score` evaluates them.
//! Reported per rule and for the whole decision, against the source's labels and the analysts'
//! verdicts, beside what the pipeline decided then.

mod report;

use std::path::PathBuf;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use clap::{Args, ValueEnum};
use postgres::fallible_iterator::FallibleIterator;

use crate::db::DbArgs;
use crate::error::Failure;
use crate::model::{threshold, LocalModel};
use crate::rules::lists::ListHistory;
use crate::rules::{Outcome, Payment, RuleSet, Subject};
pub use report::Report;
use report::Tally;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListsAt {
    /// As they were when the payment's stored decision was made (from their audit trail).
    Decided,
    /// As they are now.
    Now,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Options of `fraudctl backtest`.
#[derive(Debug, Clone, Args)]
pub struct BacktestArgs {
    #[command(flatten)]
    pub db: DbArgs,

    /// First business day of the period (YYYY-MM-DD, in the database's business time zone).
    #[arg(long)]
    pub from: NaiveDate,

    /// Last business day of the period (included).
    #[arg(long)]
    pub to: NaiveDate,

    /// The candidate rules (none: the model alone decides).
    #[arg(long = "rules", value_name = "FILE")]
    pub rules_file: Option<PathBuf>,

    /// The candidate model: its directory (model.json, feature_spec.json), whose feature spec
    /// must be the one the stored inputs were computed with.
    #[arg(long, default_value = "model/default")]
    pub model_dir: PathBuf,

    /// The candidate threshold [default: the model directory's own].
    #[arg(long)]
    pub threshold: Option<f64>,

    /// Which lists the rules read: as they were when each payment's stored decision was made
    /// (reproduces the pipeline), or as they are now (what today's lists would have done).
    #[arg(long, value_enum, default_value_t = ListsAt::Decided)]
    pub lists: ListsAt,

    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// One stored payment, as the backtest reads it.
const QUERY: &str = "
    SELECT p.trans_num, (extract(epoch FROM p.trans_time) * 1000)::int8, p.cc_hash, p.cc_last4,
           p.merchant, p.category, p.amt::float8, p.gender, p.city, p.state, p.city_pop::float8,
           p.merch_lat, p.merch_long, p.features, p.predicted_fraud, p.is_fraud_label, v.verdict,
           (extract(epoch FROM p.updated_at) * 1000)::int8
    FROM payments_scored p
    LEFT JOIN v_alert_verdicts_latest v USING (trans_num)
    WHERE (p.trans_time AT TIME ZONE business_time_zone())::date BETWEEN $1 AND $2
    ORDER BY p.trans_time, p.trans_num";

pub fn run(args: &BacktestArgs) -> Result<Report> {
    if args.to < args.from {
        return Err(
            Failure::Config(format!("--to {} is before --from {}", args.to, args.from)).into(),
        );
    }
    let model = LocalModel::load(&args.model_dir)?;
    let setting = || crate::setting::name::<BacktestArgs>("threshold");
    let threshold = threshold(args.threshold, setting, &args.model_dir)?;
    let mut client = args.db.connect()?;
    let rules = match &args.rules_file {
        Some(path) => Some(RuleSet::load(path, &model.spec.columns)?),
        None => None,
    };
    // The lists as they were when each payment's decision was stored (docs/rules.md).
    let names = rules.as_ref().map_or(&[][..], |set| &set.lists[..]);
    let lists = ListHistory::load(&mut client, names)?;
    let now = chrono::Utc::now().timestamp_millis();
    let at = |row: &postgres::Row| match args.lists {
        ListsAt::Decided => row.get::<_, i64>(17),
        ListsAt::Now => now,
    };
    let mut report = Report::new(args, &model.version, threshold, rules.as_ref());
    let params: [&(dyn postgres::types::ToSql + Sync); 2] = [&args.from, &args.to];
    let mut rows = client
        .query_raw(QUERY, params)
        .context("reading the period's payments from payments_scored")?;
    while let Some(row) = rows.next().context("reading payments_scored")? {
        let Some(features) = row.get::<_, Option<Vec<Option<f64>>>>(13) else {
            report.without_inputs += 1;
            continue;
        };
        model.check_width(&features, || {
            format!("payment {}'s stored inputs", row.get::<_, &str>(0))
        })?;
        let probability = model.model.predict(&features);
        let payment = payment(&row);
        let s = Subject {
            payment: &payment,
            features: &features,
            probability,
            threshold,
        };
        let model_fraud = probability >= threshold;
        let decision = rules
            .as_ref()
            .map(|set| set.decide(&s, &lists.at(at(&row)), model_fraud));
        let alert = decision
            .as_ref()
            .map_or(model_fraud, |d| d.action == Outcome::Alert);
        let tally = Tally {
            label: row.get(15),
            verdict: row.get::<_, Option<&str>>(16).map(|v| v == "fraud"),
        };
        report.add(
            &payment.trans_num,
            alert,
            row.get(14),
            &tally,
            decision.as_ref(),
        );
    }
    drop(rows);
    let report = report.finish();
    record(&mut client, args, &report)?;
    Ok(report)
}

/// Keeps the report in `backtest_runs` (what the dashboard shows as a rule file's latest).
fn record(client: &mut postgres::Client, args: &BacktestArgs, report: &Report) -> Result<()> {
    let rules_file = match &args.rules_file {
        Some(path) => Some(
            std::fs::canonicalize(path)
                .with_context(|| format!("resolving {}", path.display()))?
                .display()
                .to_string(),
        ),
        None => None,
    };
    let json = serde_json::to_value(report).context("the backtest's report as JSON")?;
    client
        .execute(
            "INSERT INTO backtest_runs (rules_file, rule_set, model_version, threshold, from_day,
                                        to_day, payments, report)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &rules_file,
                &report.rule_set,
                &report.model_version,
                &report.threshold,
                &args.from,
                &args.to,
                &(report.payments as i64),
                &json,
            ],
        )
        .context("recording the backtest in backtest_runs")?;
    Ok(())
}

/// What a rule reads of a stored payment.
fn payment(row: &postgres::Row) -> Payment<'_> {
    Payment {
        trans_num: row.get::<_, &str>(0).into(),
        trans_time_ms: row.get(1),
        card: row.get::<_, &str>(2).into(),
        card_last4: row.get::<_, &str>(3).into(),
        merchant: row.get::<_, &str>(4).into(),
        category: row.get::<_, &str>(5).into(),
        amt: row.get(6),
        gender: row.get::<_, &str>(7).into(),
        city: row.get::<_, &str>(8).into(),
        state: row.get::<_, &str>(9).into(),
        city_pop: row.get(10),
        merch_lat: row.get(11),
        merch_long: row.get(12),
    }
}
