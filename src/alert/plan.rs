//! What one `alert` run sends: the predicted frauds not alerted yet, grouped into one email per
//! card (a burst), each with the card's recent activity and, when an earlier email about the
//! card went out, the thread it follows up.
//!
//! The rules, in one place:
//! - **Candidates**: every predicted fraud in `payments_scored` without a `fraud_alerts` row,
//!   taken card by card, cards in the order of their oldest candidate (at most `--max-emails`
//!   cards a run, emails sent again included; the others wait for the next run).
//! - **The backfill rule**: a candidate older than `--max-age-hours` is suppressed (recorded, not
//!   emailed), unless `--retry-failed` re-opened it (`retrying`).
//! - **One email per card and run**: the card's other candidates go into one email, oldest
//!   first; a burst of more than [`MAX_FRAUDS_PER_EMAIL`] frauds goes into as many emails as it
//!   needs, each answering the one before (an email stays well under the 10 MB common servers
//!   take). An email's Message-ID is made from its oldest fraud's trans_num.
//! - **Emails interrupted**: an email whose frauds are recorded `sending` (the run died before
//!   the server's acceptance was recorded) is sent again first, exactly those frauds under the
//!   same Message-ID and headers; frauds loaded since go into emails of their own.
//! - **Threads**: when an email about the card was sent before, the new one answers the latest
//!   (`In-Reply-To`) and names the first (`References`), so a mail client shows the card's
//!   alerts as one conversation.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::fraud::{message_id, shown, Activity, Fraud};

/// How many of the card's payments an email lists as its recent activity.
pub const RECENT_PAYMENTS: i64 = 10;

/// The most frauds one email reports (its first `message::FULL_FRAUDS` in full, the others a
/// line each): about 700 kB.
pub const MAX_FRAUDS_PER_EMAIL: usize = 1000;

/// An earlier email about the card, which a new one follows up.
#[derive(Debug, Clone, PartialEq)]
pub struct Thread {
    /// The Message-ID of the first email about the card.
    pub root: String,
    /// The Message-ID of the latest one.
    pub parent: String,
}

/// One email of a card's candidates in this run, and the card's candidates held back.
#[derive(Debug)]
pub struct Burst {
    /// The frauds the email reports, oldest first (empty when every candidate is suppressed).
    pub send: Vec<Fraud>,
    /// Candidates the backfill rule holds back.
    pub suppress: Vec<Fraud>,
    pub thread: Option<Thread>,
    /// The card's latest payments up to the newest fraud of the email, newest first.
    pub recent: Vec<Activity>,
    /// An email an earlier run recorded `sending` and did not see accepted: sent again as it was.
    pub resent: bool,
}

impl Burst {
    /// The card's last four digits (the only part of it an email shows).
    pub fn cc_last4(&self) -> &str {
        let first = self.send.iter().chain(&self.suppress).next();
        first.map_or("", |f| f.cc_last4.as_str())
    }
    /// The email's Message-ID (from its oldest fraud).
    pub fn message_id(&self) -> Option<String> {
        self.send.first().map(|f| message_id(&f.trans_num))
    }
    /// The thread the email belongs to: the card's first email, or this one.
    pub fn thread_id(&self) -> Option<String> {
        match &self.thread {
            Some(t) => Some(t.root.clone()),
            None => self.message_id(),
        }
    }
}

/// What `--dry-run` reports of one email (or of one suppressed candidate).
#[derive(Debug, Serialize)]
pub struct Planned {
    pub action: &'static str,
    pub trans_nums: Vec<String>,
    pub message_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub to: Vec<String>,
    pub subject: Option<String>,
}

/// The run's emails: those to send again first, then the candidates', cards in the order of
/// their oldest candidate.
pub fn bursts(
    client: &mut postgres::Client,
    max_emails: i64,
    cutoff: DateTime<Utc>,
) -> Result<Vec<Burst>> {
    let mut bursts = interrupted(client)?;
    let cards = (max_emails - bursts.len() as i64).max(0);
    for (cc_hash, frauds) in candidates(client, cards)? {
        let (send, suppress): (Vec<Fraud>, Vec<Fraud>) = frauds
            .into_iter()
            .partition(|f| f.trans_time >= cutoff || f.retrying);
        if send.is_empty() {
            bursts.push(Burst {
                send,
                suppress,
                thread: None,
                recent: Vec::new(),
                resent: false,
            });
            continue;
        }
        let mut thread = thread(client, &cc_hash)?;
        let mut suppress = Some(suppress);
        for part in send.chunks(MAX_FRAUDS_PER_EMAIL) {
            let newest = part.last().expect("chunks are not empty").trans_time;
            let burst = Burst {
                send: part.to_vec(),
                suppress: suppress.take().unwrap_or_default(),
                thread: thread.clone(),
                recent: recent(client, &cc_hash, newest)?,
                resent: false,
            };
            // The card's next email answers this one.
            let sent = burst.message_id().expect("frauds to send");
            thread = Some(Thread {
                root: burst.thread_id().expect("frauds to send"),
                parent: sent,
            });
            bursts.push(burst);
        }
    }
    Ok(bursts)
}

/// The emails an earlier run recorded `sending` but never saw accepted, each with exactly its
/// frauds, Message-ID and thread headers as they were recorded.
fn interrupted(client: &mut postgres::Client) -> Result<Vec<Burst>> {
    let rows = client
        .query(include_str!("sql/sending.sql"), &[])
        .context("selecting the alerts recorded `sending` (emails to send again)")?;
    let mut bursts: Vec<(String, Burst)> = Vec::new();
    for r in &rows {
        let message_id: String = r.get("message_id");
        let fraud = Fraud::from_row(r)?;
        match bursts.last_mut() {
            Some((last, burst)) if *last == message_id => burst.send.push(fraud),
            _ => {
                let thread = r
                    .get::<_, Option<String>>("in_reply_to")
                    .map(|parent| Thread {
                        root: r.get("thread_id"),
                        parent,
                    });
                let cc_hash: String = r.get("cc_hash");
                let newest: DateTime<Utc> = r.get("newest");
                let burst = Burst {
                    send: vec![fraud],
                    suppress: Vec::new(),
                    thread,
                    recent: recent(client, &cc_hash, newest)?,
                    resent: true,
                };
                bursts.push((message_id, burst));
            }
        }
    }
    Ok(bursts.into_iter().map(|(_, b)| b).collect())
}

/// The candidates of the first `max_emails` cards, grouped by card (`cc_hash`).
fn candidates(client: &mut postgres::Client, max_emails: i64) -> Result<Vec<(String, Vec<Fraud>)>> {
    let rows = client
        .query(include_str!("sql/candidates.sql"), &[&max_emails])
        .context("selecting frauds not alerted yet (has `fraudctl migrate` run?)")?;
    let mut cards: Vec<(String, Vec<Fraud>)> = Vec::new();
    for r in &rows {
        let cc_hash: String = r.get("cc_hash");
        let fraud = Fraud::from_row(r)?;
        match cards.last_mut() {
            Some((last, frauds)) if *last == cc_hash => frauds.push(fraud),
            _ => cards.push((cc_hash, vec![fraud])),
        }
    }
    Ok(cards)
}

/// The card's earlier email thread, if an alert about it was sent (or is being sent: an email
/// recorded `sending` goes out again first in this run).
fn thread(client: &mut postgres::Client, cc_hash: &str) -> Result<Option<Thread>> {
    let row = client
        .query_opt(
            "SELECT a.thread_id, a.message_id
             FROM fraud_alerts a JOIN payments_scored p USING (trans_num)
             WHERE p.cc_hash = $1 AND a.status IN ('sent', 'sending')
             ORDER BY a.recorded_at DESC, a.message_id DESC
             LIMIT 1",
            &[&cc_hash],
        )
        .context("reading the card's earlier alerts from fraud_alerts")?;
    Ok(row.map(|r| Thread {
        root: r.get(0),
        parent: r.get(1),
    }))
}

/// The card's latest payments up to `until`, newest first.
fn recent(
    client: &mut postgres::Client,
    cc_hash: &str,
    until: DateTime<Utc>,
) -> Result<Vec<Activity>> {
    let rows = client
        .query(
            "SELECT trans_num, trans_time, amt::float8, merchant, category, fraud_probability,
                    predicted_fraud
             FROM payments_scored
             WHERE cc_hash = $1 AND trans_time <= $2
             ORDER BY trans_time DESC, trans_num DESC
             LIMIT $3",
            &[&cc_hash, &until, &RECENT_PAYMENTS],
        )
        .context("reading the card's recent payments from payments_scored")?;
    Ok(rows
        .iter()
        .map(|r| Activity {
            trans_num: r.get(0),
            trans_time: r.get(1),
            amt: r.get(2),
            merchant: shown(r.get::<_, &str>(3)),
            category: shown(r.get::<_, &str>(4)),
            probability: r.get(5),
            predicted_fraud: r.get(6),
        })
        .collect())
}
