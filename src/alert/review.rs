//! Payments a `review` rule decided (docs/rules.md): not frauds, so not alerts; after the
//! alerts, one email a run to the review address (`--review-to`) lists those not emailed yet,
//! each payment in exactly one email. The ledger is `review_notices`, kept as `fraud_alerts`
//! is: an email recorded `sending` before it goes out (a run that dies in between sends that
//! same email again, same Message-ID), `sent` once the SMTP server accepted it, `failed` when
//! it refused it for good; a payment older than the age limit when first seen is `suppressed`.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use lettre::message::{header, Mailbox};
use lettre::Message;
use serde::Serialize;

use super::fraud::shown;
use crate::zone::Zone;

/// The most payments one review email lists; the others go in the next run's.
pub const MAX_REVIEWS_PER_EMAIL: i64 = 1000;

/// A payment to review, as the email shows it.
#[derive(Debug)]
pub struct Review {
    pub trans_num: String,
    pub trans_time: DateTime<Utc>,
    cc_last4: String,
    merchant: String,
    category: String,
    amt: f64,
    place: String,
    probability: f64,
    /// The rules that matched, the review rule among them.
    rules: Vec<String>,
}

/// The run's review email: those of an interrupted run again, else the new ones.
pub struct Notice {
    pub message_id: String,
    pub reviews: Vec<Review>,
    /// Recorded `sending` by an earlier run, whose acceptance was not recorded.
    pub resent: bool,
}

/// What the run did of the reviews (in the alert summary).
#[derive(Debug, Default, Serialize)]
pub struct ReviewCounts {
    /// Payments in the review email the SMTP server accepted.
    pub sent: usize,
    /// Older than the age limit when first seen: recorded, not emailed.
    pub suppressed: usize,
    /// In an email the server refused for good.
    pub failed: usize,
}

const COLUMNS: &str = "p.trans_num, p.trans_time, p.cc_last4, p.merchant, p.category,
    p.amt::float8 AS amt, p.city || ', ' || p.state AS place, p.fraud_probability,
    coalesce(p.rules_matched, '{}') AS rules_matched";

fn review(r: &postgres::Row) -> Review {
    Review {
        trans_num: r.get("trans_num"),
        trans_time: r.get("trans_time"),
        cc_last4: r.get("cc_last4"),
        merchant: shown(r.get("merchant")),
        category: shown(r.get("category")),
        amt: r.get("amt"),
        place: shown(r.get("place")),
        probability: r.get("fraud_probability"),
        rules: r
            .get::<_, Vec<String>>("rules_matched")
            .iter()
            .map(|s| shown(s))
            .collect(),
    }
}

/// The email to send this run, if any; the new reviews older than `cutoff` recorded
/// `suppressed` (`run_id`) on the way, counted in `counts`.
pub fn next(
    client: &mut postgres::Client,
    cutoff: DateTime<Utc>,
    run_id: &str,
    counts: &mut ReviewCounts,
) -> Result<Option<Notice>> {
    let sending = client
        .query(
            &format!(
                "SELECT n.message_id, {COLUMNS} FROM review_notices n
                 JOIN payments_scored p USING (trans_num)
                 WHERE n.status = 'sending'
                 ORDER BY n.message_id, p.trans_time, p.trans_num"
            ),
            &[],
        )
        .context("reading the review emails being sent from review_notices")?;
    if let Some(first) = sending.first() {
        let message_id: String = first.get("message_id");
        let reviews = sending
            .iter()
            .filter(|r| r.get::<_, &str>("message_id") == message_id)
            .map(review)
            .collect();
        return Ok(Some(Notice {
            message_id,
            reviews,
            resent: true,
        }));
    }
    let new = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM payments_scored p
                 WHERE p.decision = 'review'
                   AND NOT EXISTS (SELECT 1 FROM review_notices n WHERE n.trans_num = p.trans_num)
                 ORDER BY p.trans_time, p.trans_num LIMIT $1"
            ),
            &[&MAX_REVIEWS_PER_EMAIL],
        )
        .context("reading the payments to review from payments_scored")?;
    let (send, old): (Vec<Review>, Vec<Review>) =
        new.iter().map(review).partition(|r| r.trans_time >= cutoff);
    if !old.is_empty() {
        let trans_nums: Vec<&str> = old.iter().map(|r| r.trans_num.as_str()).collect();
        client
            .execute(
                "INSERT INTO review_notices (trans_num, status, run_id, reason)
                 SELECT t, 'suppressed', $2, 'payment older than the age limit when first seen'
                 FROM unnest($1::text[]) AS t ON CONFLICT (trans_num) DO NOTHING",
                &[&trans_nums, &run_id],
            )
            .context("recording suppressed reviews in review_notices")?;
        counts.suppressed += old.len();
    }
    Ok(send
        .first()
        .map(|first| first.trans_num.clone())
        .map(|first| Notice {
            message_id: format!("<fraud-review.{first}@fraudctl>"),
            reviews: send,
            resent: false,
        }))
}

/// Records a new notice `sending` (its recipients, `run_id`), before it goes out.
pub fn record_sending(
    client: &mut postgres::Client,
    n: &Notice,
    recipients: &str,
    run_id: &str,
) -> Result<()> {
    if n.resent {
        return Ok(());
    }
    let trans_nums: Vec<&str> = n.reviews.iter().map(|r| r.trans_num.as_str()).collect();
    client
        .execute(
            "INSERT INTO review_notices (trans_num, status, message_id, recipients, run_id)
             SELECT t, 'sending', $2, $3, $4 FROM unnest($1::text[]) AS t",
            &[&trans_nums, &n.message_id, &recipients, &run_id],
        )
        .with_context(|| format!("recording the review email {} as being sent", n.message_id))?;
    Ok(())
}

/// What became of the notice: `sent` at `accepted`, else `failed` with the server's `refusal`.
pub fn record_outcome(
    client: &mut postgres::Client,
    message_id: &str,
    accepted: Option<DateTime<Utc>>,
    refusal: Option<&str>,
) -> Result<()> {
    let status = if accepted.is_some() { "sent" } else { "failed" };
    client
        .execute(
            "UPDATE review_notices SET status = $2, accepted_at = $3, reason = $4,
                    recorded_at = now()
             WHERE message_id = $1 AND status = 'sending'",
            &[&message_id, &status, &accepted, &refusal],
        )
        .with_context(|| format!("recording the review email {message_id} as {status}"))?;
    Ok(())
}

pub fn subject(n: &Notice) -> String {
    let mut rules: Vec<&str> = n
        .reviews
        .iter()
        .flat_map(|r| r.rules.iter().map(String::as_str))
        .collect();
    rules.sort_unstable();
    rules.dedup();
    let count = n.reviews.len();
    let s = if count == 1 { "" } else { "s" };
    format!(
        "Review: {count} payment{s} a rule asks to look at ({})",
        rules.join(", ")
    )
}

/// The review email: plain text, a line per payment in the business day's zone, the card as
/// its last four digits, the rules that matched, and the link to each day's report.
pub fn build(
    n: &Notice,
    from: &Mailbox,
    to: &[Mailbox],
    zone: &Zone,
    report_url: &str,
) -> Result<Message> {
    let mut body = String::from(
        "These payments matched a review rule (docs/rules.md). They are not predicted frauds and \
         no alert was sent for them: look at each, and add a card or merchant to a list, or \
         write a rule, if one needs it.\n\n",
    );
    let mut days = Vec::new();
    for r in &n.reviews {
        let _ = writeln!(
            body,
            "{}  card **** {}  ${:.2}  {} ({})  {}  p={:.3}  rules: {}\n    payment {}",
            zone.format(r.trans_time),
            r.cc_last4,
            r.amt,
            r.merchant,
            r.category,
            r.place,
            r.probability,
            r.rules.join(", "),
            r.trans_num
        );
        days.push(zone.local(r.trans_time).date_naive());
    }
    days.dedup();
    body.push_str("\nThe day's report:\n");
    for day in days {
        let _ = writeln!(body, "  {}/?day={day}", report_url.trim_end_matches('/'));
    }
    let mut builder = Message::builder()
        .from(from.clone())
        .subject(subject(n))
        .message_id(Some(n.message_id.clone()))
        .header(header::ContentType::TEXT_PLAIN);
    for t in to {
        builder = builder.to(t.clone());
    }
    Ok(builder.body(body)?)
}
