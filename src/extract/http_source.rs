//! Polls the payments API: one request at a time, timeouts, retries with backoff on 5xx, 429
//! and network errors; a 4xx other than 429 is not retried (a configuration error when nothing
//! was captured yet). Bodies are capped (`--max-body-bytes`).

use std::io::Read;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::{Collector, ExtractArgs, Sink, SourceStats};
use crate::error::Failure;
use crate::payments_api::decode;
use crate::redact;
use crate::retry::{retry, Backoff, ServiceError};

pub(crate) struct Polling {
    pub url: String,
    pub max_records: u64,
    pub max_time: Duration,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub max_body_bytes: usize,
}

/// A response body, or its first bytes when it is larger than the cap.
pub(crate) enum Body {
    Whole(String),
    TooLarge(String),
}

/// The HTTP client of the payments API: `timeout` a request.
pub(crate) fn client(timeout: Duration) -> Result<reqwest::blocking::Client> {
    Ok(reqwest::blocking::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("fraudctl/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// Hands a response's rows to the collector (a body over the cap is rejected unread, its first
/// bytes kept).
pub(crate) fn take(
    body: Body,
    origin: &str,
    max_body_bytes: usize,
    collector: &mut Collector<impl Sink>,
) -> Result<()> {
    match body {
        Body::Whole(body) => take_body(&body, origin, collector),
        Body::TooLarge(head) => collector.unreadable(
            format!("body larger than {max_body_bytes} bytes (--max-body-bytes)"),
            origin,
            &head,
        ),
    }
}

/// Polls until `max_records`, the deadline or, with `live`, the live path capturing again. A
/// source error (the API down, or refusing with a
/// 4xx) before anything was captured fails the stage; after, it ends polling and what was
/// captured is kept (counted in `source_errors`, the error in `stopped_by`).
pub(crate) fn poll(
    p: &Polling,
    collector: &mut Collector<impl Sink>,
    mut live: Option<super::handover::LiveWatch>,
) -> Result<SourceStats> {
    let client = client(p.timeout)?;
    let backoff = Backoff::new(
        p.retries,
        Duration::from_millis(200),
        Duration::from_secs(5),
    );
    let shown = redact::url(&p.url);
    let deadline = Instant::now().checked_add(p.max_time);
    let running = || deadline.is_none_or(|d| Instant::now() < d);
    let mut stats = SourceStats::default();
    tracing::info!(url = %shown, max_records = p.max_records, max_seconds = p.max_time.as_secs(), "polling the payments API");
    while collector.records() < p.max_records && running() {
        if live.as_mut().is_some_and(|watch| watch.back()) {
            tracing::info!(
                records = collector.records(),
                "the live path captures again: stopping here (it goes on)"
            );
            stats.stopped_by = Some("the live path took the capture over".into());
            break;
        }
        let body = retry(&backoff, "payments API request", || {
            stats.requests += 1;
            fetch(&client, &p.url, &shown, p.max_body_bytes).inspect_err(|_| {
                stats.source_errors += 1;
            })
        });
        let origin = format!("{shown} request {}", stats.requests);
        collector.captured_at(chrono::Utc::now().timestamp_millis());
        match body {
            Ok(body) => take(body, &origin, p.max_body_bytes, collector)?,
            Err(e) if collector.records() + collector.rejected() == 0 => {
                return Err(nothing_captured(e, p, &shown));
            }
            Err(e) => {
                tracing::warn!(url = %shown, error = %e, records = collector.records(), "payments API stopped answering; keeping what was captured");
                stats.stopped_by = Some(e.to_string());
                break;
            }
        }
        if !p.interval.is_zero() {
            let left = deadline.map_or(p.interval, |d| d.saturating_duration_since(Instant::now()));
            std::thread::sleep(p.interval.min(left));
        }
    }
    Ok(stats)
}

/// The stage's error when the API failed before anything was captured.
fn nothing_captured(e: ServiceError, p: &Polling, shown: &str) -> anyhow::Error {
    match e {
        ServiceError::Refused(msg) => {
            Failure::Config(format!("{msg}: check {}", crate::setting::name::<ExtractArgs>("api_url"))).into()
        }
        ServiceError::Unavailable(msg) => Failure::Unavailable {
            service: "payments API",
            target: shown.to_string(),
            detail: format!("{msg} (after {} retries); the run will capture its transactions when the API answers again", p.retries),
        }
        .into(),
    }
}

/// Hands a body's rows to the collector.
fn take_body(body: &str, origin: &str, collector: &mut Collector<impl Sink>) -> Result<()> {
    match decode(body) {
        Ok(rows) => {
            for (i, row) in rows.into_iter().enumerate() {
                match row {
                    Ok(row) => collector.row(&row, origin)?,
                    Err(reason) => {
                        collector.unreadable(reason, &format!("{origin} row {i}"), body)?
                    }
                }
            }
            Ok(())
        }
        Err(reason) => collector.unreadable(reason, origin, body),
    }
}

/// One request. `shown` is the URL as messages show it (secrets hidden); reqwest's own errors
/// are taken without their URL for the same reason.
pub(crate) fn fetch(
    client: &reqwest::blocking::Client,
    url: &str,
    shown: &str,
    max_body_bytes: usize,
) -> Result<Body, ServiceError> {
    let chain = |e: reqwest::Error| crate::error::chain(&e.without_url());
    let response = client
        .get(url)
        .send()
        .map_err(|e| ServiceError::Unavailable(format!("{shown}: {}", chain(e))))?;
    let status = response.status();
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(ServiceError::Unavailable(format!(
            "{shown} answered {status}"
        )));
    }
    if !status.is_success() {
        return Err(ServiceError::Refused(format!("{shown} answered {status}")));
    }
    let mut bytes = Vec::new();
    response
        .take(max_body_bytes as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ServiceError::Unavailable(format!("reading the body of {shown}: {e}")))?;
    if bytes.len() > max_body_bytes {
        bytes.truncate(8192);
        return Ok(Body::TooLarge(String::from_utf8_lossy(&bytes).into_owned()));
    }
    Ok(Body::Whole(String::from_utf8_lossy(&bytes).into_owned()))
}
