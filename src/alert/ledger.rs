//! The alert ledger (`fraud_alerts`): what was sent, suppressed or refused, one row per predicted
//! fraud, written only after the outcome is known; and the run's line in `pipeline_runs`.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use postgres::GenericClient;

use super::fraud::{message_id, Fraud};
use super::plan::Burst;
use super::AlertSummary;
use crate::audit;
use crate::verdict::{self, VerdictLinks};

/// Who an email goes to and which run sends it (or holds a candidate back).
pub struct Entry<'a> {
    pub recipients: &'a str,
    pub run_id: &'a str,
}

/// Records the burst's email as being sent (`sending`), before it goes to the SMTP server: its
/// frauds, Message-ID and thread headers, in one statement. A run that dies before
/// [`record_outcome`] leaves them so, and the next one sends that same email again
/// (`plan::interrupted`). A fraud re-opened by `--retry-failed` (`retrying`) is taken again.
pub fn record_sending(client: &mut impl GenericClient, burst: &Burst, entry: &Entry) -> Result<()> {
    let (Some(message), thread) = (burst.message_id(), burst.thread_id()) else {
        return Ok(()); // no fraud to send: no email
    };
    let trans_nums: Vec<&str> = burst.send.iter().map(|f| f.trans_num.as_str()).collect();
    let in_reply_to = burst.thread.as_ref().map(|t| t.parent.as_str());
    client
        .execute(
            "INSERT INTO fraud_alerts
                 (trans_num, status, message_id, thread_id, in_reply_to, recipients, run_id)
             SELECT t, 'sending', $2, $3, $4, $5, $6 FROM unnest($1::text[]) AS t
             ON CONFLICT (trans_num) DO UPDATE SET
                 status = EXCLUDED.status, message_id = EXCLUDED.message_id,
                 thread_id = EXCLUDED.thread_id, in_reply_to = EXCLUDED.in_reply_to,
                 recipients = EXCLUDED.recipients, run_id = EXCLUDED.run_id,
                 recorded_at = now()
             WHERE fraud_alerts.status = 'retrying'",
            &[
                &trans_nums,
                &message,
                &thread,
                &in_reply_to,
                &entry.recipients,
                &entry.run_id,
            ],
        )
        .with_context(|| format!("recording the email {message} as being sent in fraud_alerts"))?;
    Ok(())
}

/// What the SMTP server made of an email.
pub enum Outcome {
    /// Accepted, at that time.
    Accepted(DateTime<Utc>),
    /// Refused for good, with the server's reply.
    Refused(String),
}

/// What became of the email `message`, recorded `sending`: `sent` (with the time the SMTP
/// server accepted it) or `failed` (with its reply), all its frauds in one statement.
pub fn record_outcome(
    client: &mut impl GenericClient,
    message: &str,
    outcome: &Outcome,
) -> Result<()> {
    let (status, reason, accepted_at) = match outcome {
        Outcome::Accepted(at) => ("sent", None, Some(at)),
        Outcome::Refused(reply) => ("failed", Some(reply), None),
    };
    client
        .execute(
            "UPDATE fraud_alerts SET status = $2, reason = $3, recorded_at = now(),
                    accepted_at = $4
             WHERE message_id = $1 AND status = 'sending'",
            &[&message, &status, &reason, &accepted_at],
        )
        .with_context(|| format!("recording the email {message} as {status} in fraud_alerts"))?;
    Ok(())
}

/// Registers the verdict tokens an email is about to carry (`issued_verdict_tokens`), in one
/// statement, committed before it is sent: `record_alert_verdict` accepts only registered
/// tokens. Tokens of an email that then fails are registered in vain, and harmless: their
/// payment has no `sent` alert.
pub fn register_tokens(client: &mut impl GenericClient, issued: &[VerdictLinks]) -> Result<()> {
    let mut digests = Vec::with_capacity(2 * issued.len());
    let (mut trans_nums, mut verdicts, mut expiries) = (Vec::new(), Vec::new(), Vec::new());
    for links in issued {
        for (verdict, token) in links.tokens() {
            digests.push(verdict::sha256(token));
            trans_nums.push(links.trans_num.as_str());
            verdicts.push(verdict.as_str());
            expiries.push(links.expires_at);
        }
    }
    client
        .execute(
            "INSERT INTO issued_verdict_tokens (token_sha256, trans_num, verdict, expires_at)
             SELECT * FROM unnest($1::bytea[], $2::text[], $3::text[], $4::timestamptz[])
             ON CONFLICT (token_sha256) DO NOTHING",
            &[&digests, &trans_nums, &verdicts, &expiries],
        )
        .context("registering the verdict links in issued_verdict_tokens")?;
    Ok(())
}

/// Forgets registered tokens a day past their expiry (they can no longer record anything).
pub fn forget_expired_tokens(client: &mut postgres::Client) -> Result<u64> {
    client
        .execute(
            "DELETE FROM issued_verdict_tokens WHERE expires_at < now() - interval '1 day'",
            &[],
        )
        .context("deleting expired verdict tokens from issued_verdict_tokens")
}

/// Records the candidates the backfill rule held back (not emailed: no thread), in one
/// statement, with the rule's reason.
pub fn record_suppressed(
    client: &mut impl GenericClient,
    frauds: &[Fraud],
    entry: &Entry,
    reason: &str,
) -> Result<()> {
    if frauds.is_empty() {
        return Ok(());
    }
    let trans_nums: Vec<&str> = frauds.iter().map(|f| f.trans_num.as_str()).collect();
    let message_ids: Vec<String> = frauds.iter().map(|f| message_id(&f.trans_num)).collect();
    client
        .execute(
            "INSERT INTO fraud_alerts (trans_num, status, message_id, recipients, run_id, reason)
             SELECT t, 'suppressed', m, $3, $4, $5 FROM unnest($1::text[], $2::text[]) AS u(t, m)
             ON CONFLICT (trans_num) DO NOTHING",
            &[
                &trans_nums,
                &message_ids,
                &entry.recipients,
                &entry.run_id,
                &reason,
            ],
        )
        .context("recording suppressed alerts in fraud_alerts")?;
    Ok(())
}

/// The run's line in `pipeline_runs` (a later alert run of the same run adds to it).
pub fn record_run(client: &mut postgres::Client, summary: &AlertSummary) -> Result<()> {
    let row = audit::StageRow {
        run_id: &summary.run_id,
        stage: "alert",
        records: (summary.sent + summary.suppressed + summary.failed) as i64,
        rejected: 0,
        file_created_at: None,
        details: serde_json::json!({
            "sent": summary.sent, "suppressed": summary.suppressed, "failed": summary.failed,
            "emails": summary.emails,
        }),
    };
    audit::record(client, std::slice::from_ref(&row), audit::Again::Add)
}

/// `--retry-failed`: the `failed` alerts (all, or those of the trans_nums given) become
/// candidates again (`retrying`, kept so until they are sent: a run that dies first leaves them
/// to the next); returns how many.
pub fn reopen_failed(client: &mut postgres::Client, which: &[String]) -> Result<u64> {
    let reopened = client
        .execute(
            "UPDATE fraud_alerts SET status = 'retrying' WHERE status = 'failed'
               AND (cardinality($1::text[]) = 0 OR trans_num = ANY($1))",
            &[&which],
        )
        .context("re-opening failed alerts")?;
    tracing::info!(
        count = reopened,
        "failed alerts re-opened for sending (--retry-failed)"
    );
    Ok(reopened)
}
