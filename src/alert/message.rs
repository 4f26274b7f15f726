//! The alert email, as plain text and HTML: for one card, the frauds it reports (each with why
//! the model fired), the card's recent activity, and links to the report. The card appears only
//! as its last four digits.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use lettre::message::{header, Mailbox, MultiPart, SinglePart};
use lettre::Message;

use super::plan::Burst;
use crate::verdict::{self, VerdictArgs, VerdictKey, VerdictLinks};
use crate::zone::Zone;

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

pub struct Envelope<'a> {
    pub from: &'a Mailbox,
    pub to: &'a [Mailbox],
    pub report_url: &'a str,
    pub time_zone: Zone,
    /// Signs each fraud's verdict links (none without a key).
    pub verdicts: Option<Signer<'a>>,
}

/// Issues the signed verdict links of the alerts (docs/verdict-links.md).
pub struct Signer<'a> {
    pub args: &'a VerdictArgs,
    pub key: VerdictKey,
    pub base_url: &'a str,
    pub now: DateTime<Utc>,
}

impl Signer<'_> {
    pub fn links(&self, trans_num: &str) -> Result<VerdictLinks> {
        self.args
            .links(&self.key, trans_num, self.now)
            .with_context(|| format!("signing the verdict links of {trans_num}"))
    }
}

/// The verdict links of each fraud the burst sends, in its order (none without a key): signed
/// once, for the email's two parts and for their registration before it is sent.
pub fn sign(burst: &Burst, envelope: &Envelope) -> Result<Vec<VerdictLinks>> {
    let Some(signer) = &envelope.verdicts else {
        return Ok(Vec::new());
    };
    burst
        .send
        .iter()
        .map(|f| signer.links(&f.trans_num))
        .collect()
}

pub fn subject(b: &Burst) -> String {
    let follow_up = if b.thread.is_some() { "Re: " } else { "" };
    match b.send.as_slice() {
        [f] => format!(
            "{follow_up}Fraud alert: {} at {} (card **** {}, p={:.2})",
            money(f.amt),
            f.merchant,
            f.cc_last4,
            f.probability
        ),
        frauds => format!(
            "{follow_up}Fraud alert: {} payments, {} in all, on card **** {} (p up to {:.2})",
            frauds.len(),
            money(frauds.iter().map(|f| f.amt).sum::<f64>()),
            b.cc_last4(),
            frauds.iter().map(|f| f.probability).fold(0.0, f64::max)
        ),
    }
}

/// A fraud's verdict links, (label, URL), and until when they are valid.
type VerdictLine = ([(&'static str, String); 2], String);

/// The email's text, as plain lines; `html` renders the same content.
struct Content<'a> {
    b: &'a Burst,
    e: &'a Envelope<'a>,
    /// Each sent fraud's verdict links ([`sign`]), empty without a key.
    links: &'a [VerdictLinks],
}

impl Content<'_> {
    fn local(&self, t: DateTime<Utc>) -> String {
        self.e.time_zone.format(t)
    }
    fn intro(&self) -> String {
        let n = self.b.send.len();
        let what = if n == 1 {
            "A payment was predicted fraudulent".to_string()
        } else {
            format!("{n} payments were predicted fraudulent")
        };
        let again = if self.b.thread.is_some() {
            " (a follow-up: earlier alerts about this card are in this thread)"
        } else {
            ""
        };
        format!("{what} on card **** {}{again}.", self.b.cc_last4())
    }
    /// What the reader does now, in one line.
    fn next_step(&self) -> String {
        let verdict = if self.e.verdicts.is_some() {
            " Then give your verdict with the links below each payment: it is how the model learns."
        } else {
            ""
        };
        format!(
            "Next step: call the cardholder to confirm the payment{}; if they do not recognise it, block card **** {}.{verdict}",
            if self.b.send.len() > 1 { "s" } else { "" },
            self.b.cc_last4()
        )
    }
    fn fraud_fields(&self, f: &Fraud) -> Vec<(&'static str, String)> {
        let why = if f.reasons.is_empty() {
            "unavailable (the scorer gave no reasons)".to_string()
        } else {
            f.reasons.join("; ")
        };
        let time = if self.e.time_zone.is_utc() {
            self.local(f.trans_time)
        } else {
            format!(
                "{} ({} UTC)",
                self.local(f.trans_time),
                f.trans_time.format("%Y-%m-%d %H:%M:%S")
            )
        };
        vec![
            ("Time", time),
            ("Category", f.category.clone()),
            ("Cardholder", format!("lives in {}, {}", f.city, f.state)),
            ("Probability", format!("{:.4}", f.probability)),
            ("Why", why),
            ("Model", format!("{} ({})", f.model_version, f.scorer)),
            ("Transaction", f.trans_num.clone()),
        ]
    }
    /// The recent activity's rows: time, amount, merchant, category, score, and whether the
    /// payment is one this email reports.
    fn activity_rows(&self) -> Vec<[String; 6]> {
        self.b
            .recent
            .iter()
            .map(|a| {
                let here = self.b.send.iter().any(|f| f.trans_num == a.trans_num);
                let mark = match (here, a.predicted_fraud) {
                    (true, _) => "<- in this alert",
                    (false, true) => "predicted fraud",
                    (false, false) => "",
                };
                [
                    self.local(a.trans_time),
                    money(a.amt),
                    a.merchant.clone(),
                    a.category.clone(),
                    format!("{:.2}", a.probability),
                    mark.to_string(),
                ]
            })
            .collect()
    }
    /// The frauds past the first [`FULL_FRAUDS`], with their number in the email: time,
    /// amount, merchant, probability and trans_num.
    fn brief_rows(&self) -> impl Iterator<Item = (usize, [String; 5])> + '_ {
        self.b
            .send
            .iter()
            .enumerate()
            .skip(FULL_FRAUDS)
            .map(|(i, f)| {
                let row = [
                    self.local(f.trans_time),
                    money(f.amt),
                    f.merchant.clone(),
                    format!("p={:.2}", f.probability),
                    f.trans_num.clone(),
                ];
                (i, row)
            })
    }
    /// The `i`th sent fraud's verdict links, as (label, URL) pairs, and until when they are
    /// valid.
    fn verdict_links(&self, i: usize) -> Option<VerdictLine> {
        let (signer, links) = (self.e.verdicts.as_ref()?, self.links.get(i)?);
        let url = |token| verdict::url(signer.base_url, token);
        Some((
            [
                ("Confirmed fraud", url(&links.fraud)),
                ("Not fraud", url(&links.not_fraud)),
            ],
            self.local(links.expires_at),
        ))
    }
    /// The payment's page in the dashboard.
    fn payment_link(&self, f: &Fraud) -> String {
        let id: String = url::form_urlencoded::byte_serialize(f.trans_num.as_bytes()).collect();
        format!("{}/?payment={id}", self.e.report_url.trim_end_matches('/'))
    }
    fn report_link(&self) -> (String, String) {
        let newest = self.b.send.last().map(|f| f.trans_time).unwrap_or_default();
        let day = self
            .e
            .time_zone
            .local(newest)
            .format("%Y-%m-%d")
            .to_string();
        let url = format!("{}/?day={day}", self.e.report_url.trim_end_matches('/'));
        (url, day)
    }
}

/// An amount as the email shows it: in US dollars, the payments' currency, with thousands
/// separators ("$1,234.56"; the reasons' figure, `score::reasons::money`, with its sign).
fn money(amount: f64) -> String {
    let figure = crate::score::reasons::money(amount);
    match figure.strip_prefix('-') {
        Some(positive) => format!("-${positive}"),
        None => format!("${figure}"),
    }
}

/// How many of an email's frauds it shows in full (why, verdict links): the others, when a
/// burst is that large, get a line each (`plan::MAX_FRAUDS_PER_EMAIL` at most in all).
pub const FULL_FRAUDS: usize = 100;

fn plain_text(c: &Content) -> String {
    let b = c.b;
    let mut out = format!("{}\n{}\n", c.intro(), c.next_step());
    for (i, f) in b.send.iter().enumerate().take(FULL_FRAUDS) {
        out.push_str(&format!(
            "\n{}. {} at {}\n",
            i + 1,
            money(f.amt),
            f.merchant
        ));
        for (k, v) in c.fraud_fields(f) {
            out.push_str(&format!("   {:<13}{v}\n", format!("{k}:")));
        }
        out.push_str(&format!("   {:<13}{}\n", "Dashboard:", c.payment_link(f)));
        if let Some((links, until)) = c.verdict_links(i) {
            out.push_str(&format!(
                "   Your verdict (one click, then confirm; valid until {until}):\n"
            ));
            for (label, url) in links {
                out.push_str(&format!("     {:<17}{url}\n", format!("{label}:")));
            }
        }
    }
    if b.send.len() > FULL_FRAUDS {
        out.push_str(&format!(
            "\nThe other {} frauds, a line each (their verdict links are in the HTML part):\n",
            b.send.len() - FULL_FRAUDS
        ));
        for (i, row) in c.brief_rows() {
            out.push_str(&format!("   {}. {}\n", i + 1, row.join("  ")));
        }
    }
    out.push_str("\nRecent activity on the card (newest first):\n");
    for row in c.activity_rows() {
        out.push_str(&format!(
            "   {}  {:>10}  {:<36} {:<15} {:>5}  {}\n",
            row[0], row[1], row[2], row[3], row[4], row[5]
        ));
    }
    let (url, _) = c.report_link();
    out.push_str(&format!(
        "\nReport for the day: {url}\n\n\
         Each predicted fraud is sent once, in one email per card and run, by fraudctl alert.\n"
    ));
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn html(c: &Content) -> String {
    let b = c.b;
    let mut out = format!(
        "<html><body><h2>Fraud alert</h2><p>{}</p><p><b>{}</b></p>",
        esc(&c.intro()),
        esc(&c.next_step())
    );
    for (i, f) in b.send.iter().enumerate().take(FULL_FRAUDS) {
        out.push_str(&format!(
            "<h3>{}. {} at {}</h3><table>",
            i + 1,
            money(f.amt),
            esc(&f.merchant)
        ));
        for (k, v) in c.fraud_fields(f) {
            out.push_str(&format!(
                "<tr><th align=\"left\">{k}</th><td>{}</td></tr>",
                esc(&v)
            ));
        }
        out.push_str(&format!(
            "</table><p><a href=\"{}\">Open the payment in the dashboard</a></p>",
            esc(&c.payment_link(f))
        ));
        if let Some((links, until)) = c.verdict_links(i) {
            let anchors: Vec<String> = links
                .iter()
                .map(|(label, url)| format!("<a href=\"{}\">{label}</a>", esc(url)))
                .collect();
            out.push_str(&format!(
                "<p>Your verdict: {} (valid until {})</p>",
                anchors.join(" &middot; "),
                esc(&until)
            ));
        }
    }
    if b.send.len() > FULL_FRAUDS {
        out.push_str(&format!(
            "<h3>The other {} frauds</h3><table><tr><th>#</th><th>Time</th><th>Amount</th>\
             <th>Merchant</th><th>Score</th><th>Transaction</th><th>Verdict</th></tr>",
            b.send.len() - FULL_FRAUDS
        ));
        for (i, row) in c.brief_rows() {
            let cells: String = row.iter().map(|v| format!("<td>{}</td>", esc(v))).collect();
            let links = c.verdict_links(i).map_or(String::new(), |(links, _)| {
                let [(_, fraud), (_, not_fraud)] = links;
                format!(
                    "<a href=\"{}\">fraud</a> &middot; <a href=\"{}\">not fraud</a>",
                    esc(&fraud),
                    esc(&not_fraud)
                )
            });
            out.push_str(&format!(
                "<tr><td>{}</td>{cells}<td>{links}</td></tr>",
                i + 1
            ));
        }
        out.push_str("</table>");
    }
    out.push_str(
        "<h3>Recent activity on the card</h3><table><tr><th>Time</th><th>Amount</th>\
         <th>Merchant</th><th>Category</th><th>Score</th><th></th></tr>",
    );
    for row in c.activity_rows() {
        let cells: String = row.iter().map(|v| format!("<td>{}</td>", esc(v))).collect();
        out.push_str(&format!("<tr>{cells}</tr>"));
    }
    let (url, day) = c.report_link();
    out.push_str(&format!(
        "</table><p><a href=\"{}\">Open the report for {day}</a></p></body></html>",
        esc(&url)
    ));
    out
}

/// The email for a burst (which must have frauds to send), with each fraud's verdict links
/// ([`sign`]).
pub fn build(b: &Burst, e: &Envelope, links: &[VerdictLinks]) -> Result<Message> {
    let c = Content { b, e, links };
    let mut builder = Message::builder()
        .from(e.from.clone())
        .subject(subject(b))
        .message_id(b.message_id());
    if let Some(thread) = &b.thread {
        let references = if thread.root == thread.parent {
            thread.root.clone()
        } else {
            format!("{} {}", thread.root, thread.parent)
        };
        builder = builder
            .in_reply_to(thread.parent.clone())
            .references(references);
    }
    for to in e.to {
        builder = builder.to(to.clone());
    }
    let body = MultiPart::alternative()
        .singlepart(
            SinglePart::builder()
                .header(header::ContentType::TEXT_PLAIN)
                .body(plain_text(&c)),
        )
        .singlepart(
            SinglePart::builder()
                .header(header::ContentType::TEXT_HTML)
                .body(html(&c)),
        );
    Ok(builder.multipart(body)?)
}

#[cfg(test)]
mod tests {
    use super::money;

    #[test]
    fn amounts_are_dollars_with_thousands_separators() {
        assert_eq!(money(0.0), "$0.00");
        assert_eq!(money(4.5), "$4.50");
        assert_eq!(money(999.999), "$1,000.00");
        assert_eq!(money(1234567.89), "$1,234,567.89");
        assert_eq!(money(-12.3), "-$12.30");
    }
}
