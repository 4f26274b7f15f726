//! `fraudctl alert`: every predicted fraud not alerted yet in exactly one email, one email per
//! card and run (a burst), follow-ups threaded.
//!
//! The database is the source of truth: every predicted fraud in `payments_scored` without a
//! `fraud_alerts` row is a candidate (so alerts that could not go out in an earlier run go out
//! in the next); `plan.rs` holds the rules (grouping, the backfill rule, threads). The frauds of
//! an email are recorded `sent` together, only after the SMTP server accepted it (`ledger.rs`).
//! A message the server refuses for good is recorded `failed` with the server's reply and the
//! others go on; `--retry-failed` sends those again. A refusal that concerns every message
//! (login, sender, recipients) fails the run. One `alert` runs at a time (an advisory lock). An
//! email is recorded `sending` (its frauds and headers) before it goes out: if the process dies
//! between the server's acceptance and the record, the next run sends that same email again,
//! the same frauds under the same Message-ID, which mail systems use to recognise the duplicate.

mod fraud;
mod ledger;
mod message;
mod plan;
mod review;
mod smtp;

use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::Args;
use lettre::message::Mailbox;
use serde::Serialize;

pub use ledger::register_tokens;
pub use plan::Planned;

use crate::db::DbArgs;
use crate::error::Failure;
use crate::retry::{retry, Backoff};
use crate::rundir::{log_started, RunArgs, RunDir};
use crate::setting;
use crate::verdict::{VerdictArgs, VerdictKey, VerdictLinks, KEY_VAR};
use crate::zone::Zone;

/// Options of `fraudctl alert`.
#[derive(Debug, Clone, Args)]
pub struct AlertArgs {
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub options: AlertOptions,

    /// Send again the alerts the SMTP server refused for good (recorded `failed`): all of them,
    /// or those of the trans_nums given (comma-separated). They are sent whatever their age.
    #[arg(long, value_name = "TRANS_NUM", num_args = 0.., value_delimiter = ',')]
    pub retry_failed: Option<Vec<String>>,

    /// Print what would be sent (one JSON line per email or suppressed fraud, before the
    /// summary) and change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Whether the run sends the review email (review.rs): `alert` does; `fraudctl live`, which
    /// runs alert for every micro-batch, leaves it to the DAG's alert (at most one a minute).
    #[arg(skip = true)]
    pub reviews: bool,
}

impl std::ops::Deref for AlertArgs {
    type Target = AlertOptions;
    fn deref(&self) -> &AlertOptions {
        &self.options
    }
}

/// Where and how alerts are sent: `alert`'s settings but its run directory, database and
/// one-off actions (`fraudctl live` has them too).
#[derive(Debug, Clone, Args)]
pub struct AlertOptions {
    #[command(flatten)]
    pub verdict: VerdictArgs,

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

    /// Recipients of the payments a `review` rule decided (docs/rules.md), one email a run
    /// listing those not sent yet, comma-separated [default: the alerts' recipients, --to].
    #[arg(long, env = "FRAUDCTL_REVIEW_TO", value_delimiter = ',')]
    pub review_to: Option<Vec<String>>,

    /// Frauds whose payment is older than this many hours are recorded as suppressed, not
    /// emailed (the backfill rule: an alert is only useful while one can still act; 0 to
    /// 1000000).
    #[arg(long, env = "FRAUDCTL_ALERT_MAX_AGE_HOURS", default_value_t = 24,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub max_age_hours: u32,

    /// Link to the report in every email (the dashboard): an http:// or https:// URL.
    #[arg(
        long,
        env = "FRAUDCTL_REPORT_URL",
        default_value = "http://localhost:8501",
        value_parser = setting::web_url
    )]
    pub report_url: String,

    /// Most emails (cards) in one run; the rest go out in the next run (1 to 100000).
    #[arg(long, env = "FRAUDCTL_ALERT_MAX_EMAILS", default_value_t = 1000,
          value_parser = clap::value_parser!(i64).range(1..=100_000))]
    pub max_emails: i64,

    /// Retries when the SMTP server is unreachable or answers 4xx (backoff 0.5 s doubling; 0 to
    /// 20).
    #[arg(long, env = "FRAUDCTL_SMTP_RETRIES", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(0..=20))]
    pub smtp_retries: u32,
}

#[derive(Debug, Serialize)]
pub struct AlertSummary {
    pub stage: &'static str,
    pub run_id: String,
    /// Predicted frauds met (sent, suppressed or failed).
    pub candidates: usize,
    /// Emails the SMTP server accepted (one per card with frauds to send).
    pub emails: usize,
    /// Predicted frauds in those emails.
    pub sent: usize,
    pub suppressed: usize,
    /// Frauds whose email the SMTP server refused for good (recorded `failed`, retried only by
    /// `--retry-failed`).
    pub failed: usize,
    /// The payments a review rule decided: emailed to the review address, suppressed, refused.
    pub reviews: review::ReviewCounts,
    pub dry_run: bool,
}

/// What a run did, and with `--dry-run` what it would send (printed by `main` before the
/// summary).
pub struct AlertOutcome {
    pub planned: Vec<Planned>,
    pub summary: AlertSummary,
}

const LOCK: i64 = 0x6672_6175_6461_6c72; // one alert run at a time

pub fn run(args: &AlertArgs) -> Result<AlertOutcome> {
    let dir = RunDir::open(&args.run, "alert")?;
    let (from, to, review_to) = addresses(args)?;
    let mut smtp = smtp::Smtp::new(
        &args.smtp_url,
        args.smtp_username.as_deref(),
        Duration::from_secs(30),
    )?;
    let mut client = args.db.connect()?;
    client.execute("SELECT pg_advisory_lock($1)", &[&LOCK])?;
    if let (Some(which), false) = (&args.retry_failed, args.dry_run) {
        ledger::reopen_failed(&mut client, which)?;
    }
    let zone: String = client.query_one("SELECT business_time_zone()", &[])?.get(0);
    let cutoff = Utc::now()
        .checked_sub_signed(chrono::Duration::hours(i64::from(args.max_age_hours)))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let bursts = plan::bursts(&mut client, args.max_emails, cutoff)?;
    let candidates = bursts.iter().map(|b| b.send.len() + b.suppress.len()).sum();
    log_started("alert", candidates as u64);
    let mut summary = AlertSummary {
        stage: "alert",
        run_id: dir.run_id.clone(),
        candidates,
        emails: 0,
        sent: 0,
        suppressed: 0,
        failed: 0,
        reviews: review::ReviewCounts::default(),
        dry_run: args.dry_run,
    };
    let envelope = message::Envelope {
        from: &from,
        to: &to,
        report_url: &args.report_url,
        time_zone: business_zone(&zone),
        verdicts: verdict_signer(args)?,
    };
    if args.dry_run {
        let planned = bursts.iter().flat_map(|b| planned(b, args)).collect();
        return Ok(AlertOutcome { planned, summary });
    }
    let delivery = Delivery {
        args,
        envelope,
        recipients: args.to.join(","),
        review_to: &review_to,
        run_id: &dir.run_id,
    };
    delivery.send(&mut client, &mut smtp, &bursts, cutoff, &mut summary)?;
    ledger::record_run(&mut client, &summary)?;
    if summary.failed > 0 {
        tracing::warn!(failed = summary.failed, "the SMTP server refused some alerts for good; they are recorded `failed` (fraudctl report shows them): fix the cause, then `fraudctl alert --retry-failed`");
    }
    client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK])?;
    Ok(AlertOutcome {
        planned: Vec::new(),
        summary,
    })
}

/// The business day's zone, in which the email shows times: UTC, with a warning, for a name
/// PostgreSQL knows and the compiled-in zone database does not (a `posix/` zone, say).
fn business_zone(name: &str) -> Zone {
    Zone::named(name).unwrap_or_else(|| {
        tracing::warn!(
            business_time_zone = name,
            "unknown to fraudctl's zone database; times are shown in UTC"
        );
        Zone::utc()
    })
}

/// What signs the emails' verdict links: none (with a warning) when FRAUDCTL_VERDICT_KEY is not
/// set; a key that is set but unusable is a configuration error.
fn verdict_signer(args: &AlertArgs) -> Result<Option<message::Signer<'_>>> {
    if std::env::var_os(KEY_VAR).is_none() {
        // Once a process (`fraudctl live` runs alert a few times a second).
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            tracing::warn!("{KEY_VAR} is not set: the alerts carry no verdict links")
        });
        return Ok(None);
    }
    Ok(Some(message::Signer {
        args: &args.verdict,
        key: VerdictKey::from_env()?,
        base_url: &args.report_url,
        now: Utc::now(),
    }))
}

/// The sender, the alerts' recipients and the reviews', parsed.
fn addresses(args: &AlertArgs) -> Result<(Mailbox, Vec<Mailbox>, Vec<Mailbox>)> {
    let parse = |s: &str, what: &str| -> Result<Mailbox> {
        s.trim().parse::<Mailbox>().map_err(|e| {
            Failure::Config(format!("{what} {s:?} is not an email address: {e}")).into()
        })
    };
    let all = |list: &[String], id: &str| -> Result<Vec<Mailbox>> {
        let what = setting::name::<AlertArgs>(id);
        list.iter().map(|t| parse(t, &what)).collect()
    };
    let from = parse(&args.from, &setting::name::<AlertArgs>("from"))?;
    let to = all(&args.to, "to")?;
    let review_to = match &args.review_to {
        Some(list) => all(list, "review_to")?,
        None => to.clone(),
    };
    Ok((from, to, review_to))
}

/// The dry run's lines for a burst: its email, then each suppressed fraud.
fn planned(b: &plan::Burst, args: &AlertArgs) -> Vec<Planned> {
    let email = (!b.send.is_empty()).then(|| Planned {
        action: if b.resent { "send again" } else { "send" },
        trans_nums: b.send.iter().map(|f| f.trans_num.clone()).collect(),
        message_id: b.message_id(),
        in_reply_to: b.thread.as_ref().map(|t| t.parent.clone()),
        to: args.to.clone(),
        subject: Some(message::subject(b)),
    });
    let suppressed = b.suppress.iter().map(|f| Planned {
        action: "suppress",
        trans_nums: vec![f.trans_num.clone()],
        message_id: None,
        in_reply_to: None,
        to: Vec::new(),
        subject: None,
    });
    email.into_iter().chain(suppressed).collect()
}

/// Sends or suppresses a burst's frauds, recording each outcome in `fraud_alerts`.
struct Delivery<'a> {
    args: &'a AlertArgs,
    envelope: message::Envelope<'a>,
    recipients: String,
    review_to: &'a [Mailbox],
    run_id: &'a str,
}

impl Delivery<'_> {
    /// Sends every burst's email in turn, then the review email (`--reviews`): each recorded
    /// before it goes out and after the server took it.
    fn send(
        &self,
        client: &mut postgres::Client,
        smtp: &mut smtp::Smtp,
        bursts: &[plan::Burst],
        cutoff: DateTime<Utc>,
        summary: &mut AlertSummary,
    ) -> Result<()> {
        if self.envelope.verdicts.is_some() {
            ledger::forget_expired_tokens(client)?;
        }
        let mut accepted = None;
        let delivered = bursts
            .iter()
            .try_for_each(|burst| self.handle(client, smtp, burst, summary, &mut accepted));
        // The last email accepted is recorded even when a later one failed: else it goes again.
        if let Some((message, at)) = accepted {
            ledger::record_outcome(client, &message, &ledger::Outcome::Accepted(at))?;
        }
        delivered?;
        if self.args.reviews {
            self.reviews(client, smtp, cutoff, summary)?;
        }
        smtp.quit();
        Ok(())
    }

    fn entry(&self) -> ledger::Entry<'_> {
        ledger::Entry {
            recipients: &self.recipients,
            run_id: self.run_id,
        }
    }

    /// What is recorded before the burst's email goes out, in one transaction: the `sent` of
    /// the email accepted before it, its suppressed candidates, its verdict links, its email
    /// as being sent.
    fn record_ahead(
        &self,
        client: &mut postgres::Client,
        burst: &plan::Burst,
        links: &[VerdictLinks],
        accepted: Option<(String, DateTime<Utc>)>,
    ) -> Result<()> {
        let mut tx = client
            .transaction()
            .context("starting the alert ledger's transaction")?;
        if let Some((message, at)) = accepted {
            ledger::record_outcome(&mut tx, &message, &ledger::Outcome::Accepted(at))?;
        }
        let why = format!(
            "payment older than {} h when first seen",
            self.args.max_age_hours
        );
        ledger::record_suppressed(&mut tx, &burst.suppress, &self.entry(), &why)?;
        if !links.is_empty() {
            ledger::register_tokens(&mut tx, links)?;
        }
        if !burst.resent {
            ledger::record_sending(&mut tx, burst, &self.entry())?;
        }
        tx.commit().context("committing the alert ledger")
    }

    /// Records the burst's suppressed candidates and its email as being sent (`sending`), in
    /// one transaction with the `sent` of the email accepted before it (`accepted`: one commit
    /// an email, not two), then sends it; leaves it in `accepted` once the server accepted it
    /// (or records it `failed`, refused for good). A run that fails in between (the server
    /// unavailable, the process killed) leaves it `sending`, for the next run.
    fn handle(
        &self,
        client: &mut postgres::Client,
        smtp: &mut smtp::Smtp,
        burst: &plan::Burst,
        summary: &mut AlertSummary,
        accepted: &mut Option<(String, DateTime<Utc>)>,
    ) -> Result<()> {
        let links = message::sign(burst, &self.envelope)?;
        let email = match burst.message_id() {
            Some(id) => Some((id, message::build(burst, &self.envelope, &links)?)),
            None => None, // only suppressed candidates: no email
        };
        self.record_ahead(client, burst, &links, accepted.take())?;
        summary.suppressed += burst.suppress.len();
        let Some((message_id, email)) = email else {
            return Ok(());
        };
        match retry(&self.backoff(), "SMTP send", || smtp.send(&email)) {
            Ok(()) => {
                *accepted = Some((message_id, Utc::now()));
                summary.emails += 1;
                summary.sent += burst.send.len();
                tracing::info!(frauds = burst.send.len(), first = %burst.send[0].trans_num, card = %format!("**** {}", burst.cc_last4()), threaded = burst.thread.is_some(), resent = burst.resent, "fraud alert sent");
                Ok(())
            }
            Err(smtp::SendError::RefusedMessage(reply)) => {
                let reason = format!("SMTP server refused the message: {reply}");
                ledger::record_outcome(client, &message_id, &ledger::Outcome::Refused(reason))?;
                summary.failed += burst.send.len();
                tracing::warn!(first = %burst.send[0].trans_num, frauds = burst.send.len(), reply = %reply, "the SMTP server refused this alert for good; recorded as failed, going on with the others");
                Ok(())
            }
            Err(e) => {
                let left = summary.candidates - summary.sent - summary.suppressed - summary.failed;
                let what = format!("the alert for {}", burst.send[0].trans_num);
                let status = format!(
                    "{} alert(s) sent and recorded, the {left} others go out on the next attempt",
                    summary.sent
                );
                Err(stopping(smtp, e, &what, &status, "to"))
            }
        }
    }

    /// The retries of an email the SMTP server is unavailable for.
    fn backoff(&self) -> Backoff {
        Backoff::new(
            self.args.smtp_retries,
            Duration::from_millis(500),
            Duration::from_secs(5),
        )
    }

    /// The run's review email (review.rs), after the alerts: sent once, recorded as alerts are.
    fn reviews(
        &self,
        client: &mut postgres::Client,
        smtp: &mut smtp::Smtp,
        cutoff: DateTime<Utc>,
        summary: &mut AlertSummary,
    ) -> Result<()> {
        let counts = &mut summary.reviews;
        let Some(notice) = review::next(client, cutoff, self.run_id, counts)? else {
            return Ok(());
        };
        let e = &self.envelope;
        let email = review::build(&notice, e.from, self.review_to, &e.time_zone, e.report_url)?;
        let recipients: Vec<String> = self.review_to.iter().map(ToString::to_string).collect();
        review::record_sending(client, &notice, &recipients.join(","), self.run_id)?;
        let n = notice.reviews.len();
        match retry(&self.backoff(), "SMTP send", || smtp.send(&email)) {
            Ok(()) => {
                review::record_outcome(client, &notice.message_id, Some(Utc::now()), None)?;
                counts.sent += n;
                tracing::info!(payments = n, resent = notice.resent, "review email sent");
                Ok(())
            }
            Err(smtp::SendError::RefusedMessage(reply)) => {
                review::record_outcome(client, &notice.message_id, None, Some(&reply))?;
                counts.failed += n;
                tracing::warn!(payments = n, reply = %reply, "the SMTP server refused the review email for good; recorded as failed in review_notices");
                Ok(())
            }
            Err(e) => {
                let status = format!("the {n} payment(s) to review go out on the next attempt");
                Err(stopping(smtp, e, "the review email", &status, "review_to"))
            }
        }
    }
}

/// The error that stops a run: the SMTP server unavailable (after the retries), or refusing
/// what it would refuse of every email (`what`: the email it refused; `status`: what is
/// recorded and what is left; `to`: the recipients' setting).
fn stopping(
    smtp: &smtp::Smtp,
    e: smtp::SendError,
    what: &str,
    status: &str,
    to: &str,
) -> anyhow::Error {
    match e {
        smtp::SendError::Transient(msg) => Failure::Unavailable {
            service: "SMTP server",
            target: smtp.target.clone(),
            detail: format!("{msg}; {status}"),
        }
        .into(),
        other => Failure::Config(format!(
            "SMTP server {} refused {what}: {other}; it would refuse every alert and review email: check {}, {} and the SMTP account ({}, {})",
            smtp.target,
            setting::name::<AlertArgs>("from"),
            setting::name::<AlertArgs>(to),
            setting::var::<AlertArgs>("smtp_username"),
            smtp::PASSWORD_VAR,
        ))
        .into(),
    }
}
