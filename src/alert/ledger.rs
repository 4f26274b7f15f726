//! The alert ledger (`fraud_alerts`): what was sent, suppressed or refused, one row per predicted
//! fraud, written only after the outcome is known; and the run's line in `pipeline_runs`.

use anyhow::{Context, Result};

use super::message::{message_id, Fraud};
use super::plan::Burst;
use super::AlertSummary;
use crate::audit;
use crate::verdict::{self, VerdictLinks};

/// The outcome of one email (or of one suppressed candidate).
pub struct Entry<'a> {
    pub status: &'static str,
    pub reason: Option<&'a str>,
    pub recipients: &'a str,
    pub run_id: &'a str,
}

/// Records every fraud the burst's email reported, in one transaction: all or none.
pub fn record_email(client: &mut postgres::Client, burst: &Burst, entry: &Entry) -> Result<()> {
    let (Some(message), thread) = (burst.message_id(), burst.thread_id()) else {
        return Ok(()); // no fraud to send: no email
    };
    let mut tx = client.transaction()?;
    for fraud in &burst.send {
        insert(&mut tx, fraud, &message, thread.as_deref(), entry)?;
    }
    tx.commit()
        .context("committing the alert's fraud_alerts rows")
}

/// Registers the verdict tokens an email is about to carry (`issued_verdict_tokens`), committed
/// before it is sent: `record_alert_verdict` accepts only registered tokens. Tokens of an email
/// that then fails are registered in vain, and harmless: their payment has no `sent` alert.
pub fn register_tokens(client: &mut postgres::Client, issued: &[VerdictLinks]) -> Result<()> {
    let mut tx = client.transaction()?;
    for links in issued {
        for (verdict, token) in links.tokens() {
            tx.execute(
                "INSERT INTO issued_verdict_tokens (token_sha256, trans_num, verdict, expires_at)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (token_sha256) DO NOTHING",
                &[
                    &verdict::sha256(token),
                    &links.trans_num,
                    &verdict.as_str(),
                    &links.expires_at,
                ],
            )
            .with_context(|| format!("registering the verdict links of {}", links.trans_num))?;
        }
    }
    tx.commit()
        .context("committing the verdict links' issued_verdict_tokens rows")
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

/// Records a candidate the backfill rule held back (not emailed: no thread).
pub fn record_suppressed(
    client: &mut postgres::Client,
    fraud: &Fraud,
    entry: &Entry,
) -> Result<()> {
    let mut tx = client.transaction()?;
    insert(&mut tx, fraud, &message_id(&fraud.trans_num), None, entry)?;
    tx.commit()
        .context("committing a suppressed alert's fraud_alerts row")
}

fn insert(
    tx: &mut postgres::Transaction,
    f: &Fraud,
    message: &str,
    thread: Option<&str>,
    e: &Entry,
) -> Result<()> {
    tx.execute(
        "INSERT INTO fraud_alerts
             (trans_num, status, message_id, thread_id, recipients, run_id, reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (trans_num) DO UPDATE SET
             status = EXCLUDED.status, message_id = EXCLUDED.message_id,
             thread_id = EXCLUDED.thread_id, recipients = EXCLUDED.recipients,
             run_id = EXCLUDED.run_id, reason = EXCLUDED.reason, recorded_at = now()
         WHERE fraud_alerts.status = 'retrying'",
        &[
            &f.trans_num,
            &e.status,
            &message,
            &thread,
            &e.recipients,
            &e.run_id,
            &e.reason,
        ],
    )
    .with_context(|| format!("recording the alert for {} in fraud_alerts", f.trans_num))?;
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
