//! The alert email: what an analyst needs to act, as plain text and HTML. The card appears only
//! as its last four digits.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use lettre::message::{header, Mailbox, MultiPart, SinglePart};
use lettre::Message;

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
}

/// A stable Message-ID per transaction: a re-sent alert is recognisably the same message.
pub fn message_id(trans_num: &str) -> String {
    format!("<fraud-alert.{trans_num}@fraudctl>")
}

pub struct Envelope<'a> {
    pub from: &'a Mailbox,
    pub to: &'a [Mailbox],
    pub report_url: &'a str,
    pub time_zone: Tz,
}

pub fn subject(f: &Fraud) -> String {
    format!(
        "Fraud alert: {:.2} at {} (card **** {}, p={:.2})",
        f.amt, f.merchant, f.cc_last4, f.probability
    )
}

pub fn plain_text(f: &Fraud, e: &Envelope) -> String {
    let local = f.trans_time.with_timezone(&e.time_zone);
    format!(
        "A payment was predicted fraudulent.\n\n\
         Time:         {local} ({utc} UTC)\n\
         Amount:       {amt:.2}\n\
         Merchant:     {merchant}\n\
         Category:     {category}\n\
         Place:        {city}, {state}\n\
         Card:         **** {last4}\n\
         Probability:  {p:.4}\n\
         Model:        {model} ({scorer})\n\
         Transaction:  {trans_num}\n\n\
         Report for the day: {url}/?day={day}\n\n\
         Sent once per transaction by fraudctl alert.\n",
        local = local.format("%Y-%m-%d %H:%M:%S %Z"),
        utc = f.trans_time.format("%Y-%m-%d %H:%M:%S"),
        amt = f.amt,
        merchant = f.merchant,
        category = f.category,
        city = f.city,
        state = f.state,
        last4 = f.cc_last4,
        p = f.probability,
        model = f.model_version,
        scorer = f.scorer,
        trans_num = f.trans_num,
        url = e.report_url.trim_end_matches('/'),
        day = local.format("%Y-%m-%d"),
    )
}

fn html(f: &Fraud, e: &Envelope) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let local = f.trans_time.with_timezone(&e.time_zone);
    let row =
        |k: &str, v: String| format!("<tr><th align=\"left\">{k}</th><td>{}</td></tr>", esc(&v));
    let day = local.format("%Y-%m-%d");
    format!(
        "<html><body><h2>Fraud alert</h2><p>A payment was predicted fraudulent.</p><table>{}</table>\
         <p><a href=\"{url}/?day={day}\">Open the report for {day}</a></p></body></html>",
        [
            row("Time", format!("{} ({} UTC)", local.format("%Y-%m-%d %H:%M:%S %Z"), f.trans_time.format("%Y-%m-%d %H:%M:%S"))),
            row("Amount", format!("{:.2}", f.amt)),
            row("Merchant", f.merchant.clone()),
            row("Category", f.category.clone()),
            row("Place", format!("{}, {}", f.city, f.state)),
            row("Card", format!("**** {}", f.cc_last4)),
            row("Probability", format!("{:.4}", f.probability)),
            row("Model", format!("{} ({})", f.model_version, f.scorer)),
            row("Transaction", f.trans_num.clone()),
        ]
        .concat(),
        url = esc(e.report_url.trim_end_matches('/')),
    )
}

pub fn build(f: &Fraud, e: &Envelope) -> anyhow::Result<Message> {
    let mut builder = Message::builder()
        .from(e.from.clone())
        .subject(subject(f))
        .message_id(Some(message_id(&f.trans_num)));
    for to in e.to {
        builder = builder.to(to.clone());
    }
    let body = MultiPart::alternative()
        .singlepart(
            SinglePart::builder()
                .header(header::ContentType::TEXT_PLAIN)
                .body(plain_text(f, e)),
        )
        .singlepart(
            SinglePart::builder()
                .header(header::ContentType::TEXT_HTML)
                .body(html(f, e)),
        );
    Ok(builder.multipart(body)?)
}
