//! What an alert reports, as read from `payments_scored`: a predicted fraud and the card's
//! recent activity, their text made safe to show in an email ([`shown`]); and the Message-ID of
//! the email that reports a fraud first.

use anyhow::Result;
use chrono::{DateTime, Utc};

/// A predicted fraud, as read from `payments_scored`.
#[derive(Debug, Clone)]
pub struct Fraud {
    pub trans_num: String,
    pub trans_time: DateTime<Utc>,
    pub cc_last4: String,
    pub merchant: String,
    pub category: String,
    pub amt: f64,
    pub city: String,
    pub state: String,
    pub probability: f64,
    pub model_version: String,
    pub scorer: String,
    /// Why the model fired, in plain words (score's reasons); empty when unavailable.
    pub reasons: Vec<String>,
    /// Re-opened by `--retry-failed`: sent whatever its age.
    pub retrying: bool,
}

impl Fraud {
    pub fn from_row(r: &postgres::Row) -> Result<Fraud> {
        let reasons: Option<serde_json::Value> = r.try_get("reasons")?;
        let text = |column: &str| -> Result<String> { Ok(shown(&r.try_get::<_, String>(column)?)) };
        Ok(Fraud {
            trans_num: r.try_get("trans_num")?,
            trans_time: r.try_get("trans_time")?,
            cc_last4: r.try_get("cc_last4")?,
            merchant: text("merchant")?,
            category: text("category")?,
            amt: r.try_get("amt")?,
            city: text("city")?,
            state: text("state")?,
            probability: r.try_get("fraud_probability")?,
            model_version: text("model_version")?,
            scorer: text("scorer")?,
            reasons: reason_texts(reasons.as_ref()),
            retrying: r.try_get("retrying")?,
        })
    }
}

/// The `text` of each reason in score's `reasons` list (null or absent: none).
fn reason_texts(reasons: Option<&serde_json::Value>) -> Vec<String> {
    let Some(list) = reasons.and_then(|r| r.as_array()) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|r| r.get("text")?.as_str())
        .map(shown)
        .collect()
}

/// A text from the database as an email shows it: card numbers masked, and every control
/// character (a newline would start a line of its own in the plain-text part: a fake link) and
/// every bidirectional formatting character (which reorders what a reader sees, the subject's
/// included) replaced by U+FFFD. Extract refuses control characters; rows stored otherwise may
/// hold them.
pub fn shown(text: &str) -> String {
    const BIDI: [std::ops::RangeInclusive<char>; 4] = [
        '\u{061C}'..='\u{061C}',
        '\u{200E}'..='\u{200F}',
        '\u{202A}'..='\u{202E}',
        '\u{2066}'..='\u{2069}',
    ];
    crate::pan::mask_digit_runs(text)
        .chars()
        .map(|c| {
            if c.is_control() || BIDI.iter().any(|r| r.contains(&c)) {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect()
}

/// One of the card's recent payments.
#[derive(Debug, Clone)]
pub struct Activity {
    pub trans_num: String,
    pub trans_time: DateTime<Utc>,
    pub amt: f64,
    pub merchant: String,
    pub category: String,
    pub probability: f64,
    pub predicted_fraud: bool,
}

/// A stable Message-ID per email, from its oldest fraud: a re-sent alert is recognisably the
/// same message.
pub fn message_id(trans_num: &str) -> String {
    format!("<fraud-alert.{trans_num}@fraudctl>")
}
