//! `fraudctl alert`: one email per predicted fraud not alerted yet, exactly once.
//!
//! The database is the source of truth: every predicted fraud in `payments_scored` without a
//! `fraud_alerts` row is a candidate (so alerts that could not go out in an earlier run go out
//! in the next). An alert is recorded as `sent` only after the SMTP server accepted it. The rule
//! for old frauds (met again in a backfill): older than --max-age-hours, they are recorded as
//! `suppressed`, not emailed. A message the server refuses for good is recorded as `failed` with
//! the server's reply and the others go on; `--retry-failed` sends those again. A refusal that
//! concerns every message (login, sender, recipients) fails the run. One `alert` runs at a time
//! (an advisory lock). If the process dies between the server's acceptance and the record, the
//! next run sends that alert again with the same Message-ID, which mail systems use to recognise
//! the duplicate.

mod message;
mod smtp;

use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::Args;
use lettre::message::Mailbox;
use serde::Serialize;

pub use message::{message_id, Fraud};

use crate::audit;
use crate::db::DbArgs;
use crate::error::Failure;
use crate::retry::{retry, Backoff};
use crate::rundir::{log_started, RunArgs, RunDir};

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
    /// emailed (the backfill rule: an alert is only useful while one can still act; 0 to
    /// 1000000).
    #[arg(long, env = "FRAUDCTL_ALERT_MAX_AGE_HOURS", default_value_t = 24,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub max_age_hours: u32,

    /// Link to the report in every email (the dashboard).
    #[arg(
        long,
        env = "FRAUDCTL_REPORT_URL",
        default_value = "http://localhost:8501"
    )]
    pub report_url: String,

    /// Most emails in one run; the rest go out in the next run (1 to 100000).
    #[arg(long, env = "FRAUDCTL_ALERT_MAX_EMAILS", default_value_t = 1000,
          value_parser = clap::value_parser!(i64).range(1..=100_000))]
    pub max_emails: i64,

    /// Retries when the SMTP server is unreachable or answers 4xx (backoff 0.5 s doubling; 0 to
    /// 20).
    #[arg(long, env = "FRAUDCTL_SMTP_RETRIES", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(0..=20))]
    pub smtp_retries: u32,

    /// Send again the alerts the SMTP server refused for good (recorded `failed`): all of them,
    /// or those of the trans_nums given (comma-separated). They are sent whatever their age.
    #[arg(long, value_name = "TRANS_NUM", num_args = 0.., value_delimiter = ',')]
    pub retry_failed: Option<Vec<String>>,

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
    /// Alerts the SMTP server refused for good (recorded `failed`, retried only by
    /// `--retry-failed`).
    pub failed: usize,
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

/// What happens to one candidate.
#[derive(Clone, Copy, PartialEq)]
enum Action {
    Send,
    /// Older than --max-age-hours when first met (the backfill rule).
    Suppress,
}

pub fn run(args: &AlertArgs) -> Result<AlertSummary> {
    let dir = RunDir::open(&args.run)?;
    let (from, to) = addresses(args)?;
    let mut smtp = smtp::Smtp::connect(
        &args.smtp_url,
        args.smtp_username.as_deref(),
        Duration::from_secs(30),
    )?;
    let mut client = args.db.connect()?;
    client.execute("SELECT pg_advisory_lock($1)", &[&LOCK])?;
    let retried = match &args.retry_failed {
        Some(which) if !args.dry_run => reopen_failed(&mut client, which)?,
        _ => Vec::new(),
    };
    let zone: String = client.query_one("SELECT business_time_zone()", &[])?.get(0);
    let frauds = candidates(&mut client, args.max_emails)?;
    log_started("alert", frauds.len() as u64);
    let cutoff = Utc::now()
        .checked_sub_signed(chrono::Duration::hours(i64::from(args.max_age_hours)))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let action = |f: &Fraud| {
        if f.trans_time < cutoff && !retried.contains(&f.trans_num) {
            Action::Suppress
        } else {
            Action::Send
        }
    };
    let mut summary = AlertSummary {
        stage: "alert",
        run_id: dir.run_id.clone(),
        candidates: frauds.len(),
        sent: 0,
        suppressed: 0,
        failed: 0,
        dry_run: args.dry_run,
    };
    if args.dry_run {
        for fraud in &frauds {
            print_planned(fraud, action(fraud), args)?;
        }
    } else {
        let delivery = Delivery {
            args,
            envelope: message::Envelope {
                from: &from,
                to: &to,
                report_url: &args.report_url,
                time_zone: zone.parse().unwrap_or(chrono_tz::UTC),
            },
            recipients: args.to.join(","),
            run_id: &dir.run_id,
        };
        for fraud in &frauds {
            delivery.handle(&mut client, &mut smtp, fraud, action(fraud), &mut summary)?;
        }
        smtp.quit();
        record_run(&mut client, &summary)?;
        if summary.failed > 0 {
            tracing::warn!(failed = summary.failed, "the SMTP server refused some alerts for good; they are recorded `failed` (fraudctl report shows them): fix the cause, then `fraudctl alert --retry-failed`");
        }
    }
    client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK])?;
    Ok(summary)
}

/// The sender and recipients, parsed.
fn addresses(args: &AlertArgs) -> Result<(Mailbox, Vec<Mailbox>)> {
    let parse = |s: &str, what: &str| -> Result<Mailbox> {
        s.trim().parse::<Mailbox>().map_err(|e| {
            Failure::Config(format!("{what} {s:?} is not an email address: {e}")).into()
        })
    };
    let from = parse(&args.from, "--from / FRAUDCTL_ALERT_FROM")?;
    let to = args
        .to
        .iter()
        .map(|t| parse(t, "--to / FRAUDCTL_ALERT_TO"))
        .collect::<Result<_>>()?;
    Ok((from, to))
}

fn print_planned(fraud: &Fraud, action: Action, args: &AlertArgs) -> Result<()> {
    let planned = Planned {
        action: if action == Action::Suppress {
            "suppress"
        } else {
            "send"
        },
        trans_num: &fraud.trans_num,
        message_id: message_id(&fraud.trans_num),
        to: &args.to,
        subject: message::subject(fraud),
    };
    println!("{}", serde_json::to_string(&planned)?);
    Ok(())
}

/// Sends or suppresses candidates, recording each outcome in `fraud_alerts`.
struct Delivery<'a> {
    args: &'a AlertArgs,
    envelope: message::Envelope<'a>,
    recipients: String,
    run_id: &'a str,
}

impl Delivery<'_> {
    fn handle(
        &self,
        client: &mut postgres::Client,
        smtp: &mut smtp::Smtp,
        fraud: &Fraud,
        action: Action,
        summary: &mut AlertSummary,
    ) -> Result<()> {
        let record = |client: &mut postgres::Client, status: &str, reason: Option<&str>| {
            record(client, fraud, status, &self.recipients, self.run_id, reason)
        };
        if action == Action::Suppress {
            let why = format!(
                "payment older than {} h when first seen",
                self.args.max_age_hours
            );
            summary.suppressed += 1;
            return record(client, "suppressed", Some(&why));
        }
        let email = message::build(fraud, &self.envelope)?;
        let backoff = Backoff::new(
            self.args.smtp_retries,
            Duration::from_millis(500),
            Duration::from_secs(5),
        );
        let sent = retry(&backoff, "SMTP send", || smtp.send(&email));
        match sent {
            Ok(()) => {
                record(client, "sent", None)?;
                summary.sent += 1;
                tracing::info!(trans_num = %fraud.trans_num, card = %format!("**** {}", fraud.cc_last4), "fraud alert sent");
                Ok(())
            }
            Err(smtp::SendError::RefusedMessage(reply)) => {
                let reason = format!("SMTP server refused the message: {reply}");
                record(client, "failed", Some(&reason))?;
                summary.failed += 1;
                tracing::warn!(trans_num = %fraud.trans_num, reply = %reply, "the SMTP server refused this alert for good; recorded as failed, going on with the others");
                Ok(())
            }
            Err(smtp::SendError::Transient(msg)) => Err(Failure::Unavailable {
                service: "SMTP server",
                target: smtp.target.clone(),
                detail: format!(
                    "{msg}; {} alert(s) sent and recorded, the {} others go out on the next attempt",
                    summary.sent,
                    summary.candidates - summary.sent - summary.suppressed - summary.failed
                ),
            }
            .into()),
            Err(smtp::SendError::RefusedAll(msg)) => Err(Failure::Config(format!(
                "SMTP server {} refused the alert for {}: {msg}; it would refuse every alert: check --from/--to and the SMTP account (FRAUDCTL_SMTP_USERNAME, FRAUDCTL_SMTP_PASSWORD)",
                smtp.target, fraud.trans_num
            ))
            .into()),
        }
    }
}

/// The run's line in `pipeline_runs` (a later alert run of the same run adds to it).
fn record_run(client: &mut postgres::Client, summary: &AlertSummary) -> Result<()> {
    let row = audit::StageRow {
        run_id: &summary.run_id,
        stage: "alert",
        records: (summary.sent + summary.suppressed + summary.failed) as i64,
        rejected: 0,
        file_created_at: None,
        details: serde_json::json!({
            "sent": summary.sent, "suppressed": summary.suppressed, "failed": summary.failed,
        }),
    };
    audit::record(client, &row, audit::Again::Add)
}

/// `--retry-failed`: the `failed` alerts (all, or those of the trans_nums given) become
/// candidates again; returns their trans_nums.
fn reopen_failed(client: &mut postgres::Client, which: &[String]) -> Result<Vec<String>> {
    let rows = client
        .query(
            "DELETE FROM fraud_alerts WHERE status = 'failed'
               AND (cardinality($1::text[]) = 0 OR trans_num = ANY($1))
             RETURNING trans_num",
            &[&which],
        )
        .context("re-opening failed alerts")?;
    let reopened: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    tracing::info!(
        count = reopened.len(),
        "failed alerts re-opened for sending (--retry-failed)"
    );
    Ok(reopened)
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
