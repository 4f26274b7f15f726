//! `fraudctl alert`: one email per predicted fraud not alerted yet, exactly once.
//!
//! The database is the source of truth: every predicted fraud in `payments_scored` without a
//! `fraud_alerts` row is a candidate (so alerts that could not go out in an earlier run go out
//! in the next). An alert is recorded as `sent` only after the SMTP server accepted it. The rule
//! for old frauds (met again in a backfill): older than --max-age-hours, they are recorded as
//! `suppressed`, not emailed. One `alert` runs at a time (an advisory lock). If the process dies
//! between the server's acceptance and the record, the next run sends that alert again with the
//! same Message-ID, which mail systems use to recognise the duplicate.

mod message;
mod smtp;

use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use clap::Args;
use lettre::message::Mailbox;
use serde::Serialize;

pub use message::{message_id, Fraud};

use crate::db::DbArgs;
use crate::error::Failure;
use crate::retry::{retry, Backoff};
use crate::rundir::{RunArgs, RunDir};

/// Options of `fraudctl alert`.
#[derive(Debug, Clone, Args)]
pub struct AlertArgs {
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub db: DbArgs,

    /// SMTP server: smtp://HOST[:PORT] (plain), smtp+starttls://HOST[:PORT] or smtps://HOST[:PORT]
    /// (TLS). Credentials: FRAUDCTL_SMTP_USERNAME and FRAUDCTL_SMTP_PASSWORD (environment only).
    #[arg(
        long,
        env = "FRAUDCTL_SMTP_URL",
        default_value = "smtp://127.0.0.1:1025"
    )]
    pub smtp_url: String,

    /// SMTP user name (the password is read from FRAUDCTL_SMTP_PASSWORD).
    #[arg(long, env = "FRAUDCTL_SMTP_USERNAME")]
    pub smtp_username: Option<String>,

    /// Sender address.
    #[arg(
        long = "from",
        env = "FRAUDCTL_ALERT_FROM",
        default_value = "fraudctl <fraudctl@localhost>"
    )]
    pub from: String,

    /// Recipients, comma-separated.
    #[arg(
        long = "to",
        env = "FRAUDCTL_ALERT_TO",
        default_value = "fraud-team@localhost",
        value_delimiter = ','
    )]
    pub to: Vec<String>,

    /// Frauds whose payment is older than this many hours are recorded as suppressed, not
    /// emailed (the backfill rule: an alert is only useful while one can still act).
    #[arg(long, env = "FRAUDCTL_ALERT_MAX_AGE_HOURS", default_value_t = 24)]
    pub max_age_hours: u32,

    /// Link to the report in every email (the dashboard).
    #[arg(
        long,
        env = "FRAUDCTL_REPORT_URL",
        default_value = "http://localhost:8501"
    )]
    pub report_url: String,

    /// Most emails in one run; the rest go out in the next run.
    #[arg(long, env = "FRAUDCTL_ALERT_MAX_EMAILS", default_value_t = 1000)]
    pub max_emails: i64,

    /// Retries when the SMTP server is unreachable or answers 4xx (backoff 0.5 s doubling).
    #[arg(long, env = "FRAUDCTL_SMTP_RETRIES", default_value_t = 2)]
    pub smtp_retries: u32,

    /// Print what would be sent (one JSON line per email) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Serialize)]
pub struct AlertSummary {
    pub stage: &'static str,
    pub run_id: String,
    pub candidates: usize,
    pub sent: usize,
    pub suppressed: usize,
    pub dry_run: bool,
}

/// What `--dry-run` prints per alert.
#[derive(Debug, Serialize)]
struct Planned<'a> {
    action: &'a str,
    trans_num: &'a str,
    message_id: String,
    to: &'a [String],
    subject: String,
}

const LOCK: i64 = 0x6672_6175_6461_6c72; // one alert run at a time

pub fn run(args: &AlertArgs) -> Result<AlertSummary> {
    let dir = RunDir::open(&args.run)?;
    let parse = |s: &str, what: &str| -> Result<Mailbox> {
        s.trim().parse::<Mailbox>().map_err(|e| {
            Failure::Config(format!("{what} {s:?} is not an email address: {e}")).into()
        })
    };
    let from = parse(&args.from, "--from / FRAUDCTL_ALERT_FROM")?;
    let to: Vec<Mailbox> = args
        .to
        .iter()
        .map(|t| parse(t, "--to / FRAUDCTL_ALERT_TO"))
        .collect::<Result<_>>()?;
    let smtp = smtp::Smtp::connect(
        &args.smtp_url,
        args.smtp_username.as_deref(),
        Duration::from_secs(30),
    )?;

    let mut client = args.db.connect()?;
    client.execute("SELECT pg_advisory_lock($1)", &[&LOCK])?;
    let zone: String = client.query_one("SELECT business_time_zone()", &[])?.get(0);
    let time_zone: Tz = zone.parse().unwrap_or(chrono_tz::UTC);
    let frauds = candidates(&mut client, args.max_emails)?;
    let cutoff = Utc::now() - chrono::Duration::hours(i64::from(args.max_age_hours));
    let envelope = message::Envelope {
        from: &from,
        to: &to,
        report_url: &args.report_url,
        time_zone,
    };
    let recipients = args.to.join(",");
    let backoff = Backoff::new(
        args.smtp_retries,
        Duration::from_millis(500),
        Duration::from_secs(5),
    );
    let (mut sent, mut suppressed) = (0, 0);
    for fraud in &frauds {
        let old = fraud.trans_time < cutoff;
        if args.dry_run {
            let planned = Planned {
                action: if old { "suppress" } else { "send" },
                trans_num: &fraud.trans_num,
                message_id: message_id(&fraud.trans_num),
                to: &args.to,
                subject: message::subject(fraud),
            };
            println!("{}", serde_json::to_string(&planned)?);
            continue;
        }
        if old {
            record(
                &mut client,
                fraud,
                "suppressed",
                &recipients,
                &dir.run_id,
                Some(&format!(
                    "payment older than {} h when first seen",
                    args.max_age_hours
                )),
            )?;
            suppressed += 1;
            continue;
        }
        let email = message::build(fraud, &envelope)?;
        let result = retry(&backoff, "SMTP send", || {
            smtp.send(&email).map_err(|e| {
                let transient = matches!(e, smtp::SendError::Transient(_));
                (e, transient)
            })
        });
        match result {
            Ok(()) => {
                record(&mut client, fraud, "sent", &recipients, &dir.run_id, None)?;
                sent += 1;
                tracing::info!(trans_num = %fraud.trans_num, card = %format!("**** {}", fraud.cc_last4), "fraud alert sent");
            }
            Err(smtp::SendError::Transient(msg)) => {
                return Err(Failure::Unavailable {
                    service: "SMTP server",
                    target: smtp.target.clone(),
                    detail: format!("{msg}; {sent} alert(s) sent and recorded, the {} others go out on the next attempt", frauds.len() - sent - suppressed),
                }
                .into())
            }
            Err(smtp::SendError::Permanent(msg)) => {
                return Err(Failure::Config(format!(
                    "SMTP server {} refused the alert for {}: {msg}; check --from/--to and the SMTP account",
                    smtp.target, fraud.trans_num
                ))
                .into())
            }
        }
    }
    if !args.dry_run {
        let details = serde_json::json!({ "sent": sent, "suppressed": suppressed }).to_string();
        client.execute(
            "INSERT INTO pipeline_runs (run_id, stage, records, details) VALUES ($1, 'alert', $2, $3::text::jsonb)
             ON CONFLICT (run_id, stage) DO UPDATE SET records = pipeline_runs.records + EXCLUDED.records,
                 details = EXCLUDED.details, recorded_at = now()",
            &[&dir.run_id, &((sent + suppressed) as i64), &details],
        )?;
    }
    client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK])?;
    Ok(AlertSummary {
        stage: "alert",
        run_id: dir.run_id,
        candidates: frauds.len(),
        sent,
        suppressed,
        dry_run: args.dry_run,
    })
}

fn candidates(client: &mut postgres::Client, limit: i64) -> Result<Vec<Fraud>> {
    let rows = client
        .query(
            "SELECT p.trans_num, p.trans_time, p.cc_last4, p.merchant, p.category, p.amt::float8,
                    p.city, p.state, p.fraud_probability, p.model_version, p.scorer
             FROM payments_scored p
             WHERE p.predicted_fraud
               AND NOT EXISTS (SELECT 1 FROM fraud_alerts a WHERE a.trans_num = p.trans_num)
             ORDER BY p.trans_time, p.trans_num
             LIMIT $1",
            &[&limit],
        )
        .context("selecting frauds not alerted yet (has `fraudctl migrate` run?)")?;
    Ok(rows
        .iter()
        .map(|r| Fraud {
            trans_num: r.get(0),
            trans_time: r.get::<_, DateTime<Utc>>(1),
            cc_last4: r.get(2),
            merchant: r.get(3),
            category: r.get(4),
            amt: r.get(5),
            city: r.get(6),
            state: r.get(7),
            probability: r.get(8),
            model_version: r.get(9),
            scorer: r.get(10),
        })
        .collect())
}

fn record(
    client: &mut postgres::Client,
    f: &Fraud,
    status: &str,
    recipients: &str,
    run_id: &str,
    reason: Option<&str>,
) -> Result<()> {
    client
        .execute(
            "INSERT INTO fraud_alerts (trans_num, status, message_id, recipients, run_id, reason)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (trans_num) DO NOTHING",
            &[
                &f.trans_num,
                &status,
                &message_id(&f.trans_num),
                &recipients,
                &run_id,
                &reason,
            ],
        )
        .with_context(|| format!("recording the alert for {} in fraud_alerts", f.trans_num))?;
    Ok(())
}
