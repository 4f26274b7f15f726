//! The alert email, as plain text and HTML: for one card, the frauds it reports (each with why
//! the model fired), the card's recent activity, and links to the report. The card appears only
//! as its last four digits.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use lettre::message::{header, Mailbox, MultiPart, SinglePart};
use lettre::Message;

use super::fraud::Fraud;
use super::plan::Burst;
use crate::verdict::{self, VerdictArgs, VerdictKey, VerdictLinks};
use crate::zone::Zone;

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
/// separators ("$1,234.56"; the reasons' figure, `model::reasons::money`, with its sign).
fn money(amount: f64) -> String {
    let figure = crate::model::reasons::money(amount);
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
    let mut out = format!(
        "<html><body><h2>Fraud alert</h2><p>{}</p><p><b>{}</b></p>",
        esc(&c.intro()),
        esc(&c.next_step())
    );
    html_frauds_in_full(c, &mut out);
    if c.b.send.len() > FULL_FRAUDS {
        html_other_frauds(c, &mut out);
    }
    out.push_str(
        "<h3>Recent activity on the card</h3><table><tr><th>Time</th><th>Amount</th>\
         <th>Merchant</th><th>Category</th><th>Score</th><th></th></tr>",
    );
    for row in c.activity_rows() {
        out.push_str(&format!("<tr>{}</tr>", html_cells(&row)));
    }
    let (url, day) = c.report_link();
    out.push_str(&format!(
        "</table><p><a href=\"{}\">Open the report for {day}</a></p></body></html>",
        esc(&url)
    ));
    out
}

/// The first [`FULL_FRAUDS`] frauds, each a section: its fields, its link, its verdict links.
fn html_frauds_in_full(c: &Content, out: &mut String) {
    for (i, f) in c.b.send.iter().enumerate().take(FULL_FRAUDS) {
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
}

/// The frauds after the first [`FULL_FRAUDS`], a table row each with its verdict links.
fn html_other_frauds(c: &Content, out: &mut String) {
    out.push_str(&format!(
        "<h3>The other {} frauds</h3><table><tr><th>#</th><th>Time</th><th>Amount</th>\
         <th>Merchant</th><th>Score</th><th>Transaction</th><th>Verdict</th></tr>",
        c.b.send.len() - FULL_FRAUDS
    ));
    for (i, row) in c.brief_rows() {
        let links = c.verdict_links(i).map_or(String::new(), |(links, _)| {
            let [(_, fraud), (_, not_fraud)] = links;
            format!(
                "<a href=\"{}\">fraud</a> &middot; <a href=\"{}\">not fraud</a>",
                esc(&fraud),
                esc(&not_fraud)
            )
        });
        out.push_str(&format!(
            "<tr><td>{}</td>{}<td>{links}</td></tr>",
            i + 1,
            html_cells(&row)
        ));
    }
    out.push_str("</table>");
}

/// A table row's cells, escaped.
fn html_cells(row: &[String]) -> String {
    row.iter().map(|v| format!("<td>{}</td>", esc(v))).collect()
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
