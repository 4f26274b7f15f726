//! Polls the payments API: one request at a time, timeouts, retries with backoff on 5xx, 429
//! and network errors; a 4xx other than 429 is a configuration error and is not retried.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::{Collector, SourceStats};
use crate::error::Failure;
use crate::payments_api::decode;
use crate::retry::{retry, Backoff};

pub(crate) struct Polling {
    pub url: String,
    pub max_records: u64,
    pub max_time: Duration,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
}

enum FetchError {
    Transient(String),
    Permanent(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Transient(m) | FetchError::Permanent(m) => f.write_str(m),
        }
    }
}

pub(crate) fn poll(p: &Polling, collector: &mut Collector) -> Result<SourceStats> {
    let client = reqwest::blocking::Client::builder()
        .timeout(p.timeout)
        .user_agent(concat!("fraudctl/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let backoff = Backoff::new(
        p.retries,
        Duration::from_millis(200),
        Duration::from_secs(5),
    );
    let deadline = Instant::now() + p.max_time;
    let mut stats = SourceStats::default();
    tracing::info!(url = %p.url, max_records = p.max_records, max_seconds = p.max_time.as_secs(), "polling the payments API");
    while collector.records() < p.max_records && Instant::now() < deadline {
        let body = retry(&backoff, "payments API request", || {
            stats.requests += 1;
            fetch(&client, &p.url).map_err(|e| {
                stats.source_errors += 1;
                let transient = matches!(e, FetchError::Transient(_));
                (e, transient)
            })
        });
        match body {
            Ok(body) => {
                let origin = format!("{} request {}", p.url, stats.requests);
                match decode(&body) {
                    Ok(rows) => {
                        for (i, row) in rows.into_iter().enumerate() {
                            match row {
                                Ok(row) => collector.row(&row, &origin)?,
                                Err(reason) => collector.unreadable(
                                    reason,
                                    &format!("{origin} row {i}"),
                                    &body,
                                )?,
                            }
                        }
                    }
                    Err(reason) => collector.unreadable(reason, &origin, &body)?,
                }
            }
            Err(FetchError::Permanent(msg)) => {
                return Err(
                    Failure::Config(format!("{msg}: check --api-url / FRAUDCTL_API_URL")).into(),
                );
            }
            Err(FetchError::Transient(msg)) => {
                if collector.records() + collector.rejected() == 0 {
                    return Err(Failure::Unavailable {
                        service: "payments API",
                        target: p.url.clone(),
                        detail: format!("{msg} (after {} retries); the run will capture its transactions when the API answers again", p.retries),
                    }
                    .into());
                }
                tracing::warn!(url = %p.url, error = %msg, records = collector.records(), "payments API stopped answering; keeping what was captured");
                break;
            }
        }
        if !p.interval.is_zero() {
            std::thread::sleep(
                p.interval
                    .min(deadline.saturating_duration_since(Instant::now())),
            );
        }
    }
    Ok(stats)
}

fn fetch(client: &reqwest::blocking::Client, url: &str) -> Result<String, FetchError> {
    let response = client
        .get(url)
        .send()
        .map_err(|e| FetchError::Transient(crate::error::chain(&e)))?;
    let status = response.status();
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(FetchError::Transient(format!("{url} answered {status}")));
    }
    if !status.is_success() {
        return Err(FetchError::Permanent(format!("{url} answered {status}")));
    }
    response.text().map_err(|e| {
        FetchError::Transient(format!(
            "reading the body of {url}: {}",
            crate::error::chain(&e)
        ))
    })
}
