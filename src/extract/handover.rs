//! `extract` beside the live path (`fraudctl live`): while the live path holds its lease and
//! beats, it captures this run's minute, and `extract` waits for the raw file it writes there
//! ([`wait_for_live`]) instead of polling the API (the stream is never split between two
//! pollers). When nobody holds the lease, `extract` polls the API itself, as without a live
//! path: first taking over what a live path that died journaled in this minute
//! ([`take_over_journal`]), and stopping early if the live path comes back ([`LiveWatch`]).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};

use super::{Collector, ExtractArgs, Sink, StageFiles};
use crate::error::Failure;
use crate::live::journal::{RAW as JOURNAL, REJECTED as REJECTED_JOURNAL};
use crate::live::lease;
use crate::stagefile::Rejected;

/// Waits, while the live path's lease is fresh, for `run_dir`'s raw file to appear (at most
/// `--live-wait-secs`): `Ok` once it is there or once the lease is stale (then `extract`
/// polls the API itself). A database that cannot be read counts as no live path.
pub fn wait_for_live(args: &ExtractArgs, run_dir: &Path) -> Result<()> {
    let raw = run_dir.join("raw.jsonl");
    let stale = Duration::from_secs(args.live_stale_secs);
    let mut client = match args.db.connect() {
        Ok(client) => client,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "cannot read the live path's lease: polling the API");
            return Ok(());
        }
    };
    let deadline = Instant::now() + Duration::from_secs(args.live_wait_secs);
    let mut said = false;
    while !raw.exists() {
        if !lease::fresh(&mut client, stale)? {
            if said {
                tracing::warn!(
                    "the live path's lease went stale while waiting for its file: polling the API"
                );
            }
            return Ok(());
        }
        never_captured(&mut client, args.interval_end, run_dir)?;
        if Instant::now() >= deadline {
            return Err(Failure::Unavailable {
                service: "live path",
                target: run_dir.display().to_string(),
                detail: format!(
                    "it holds the lease but has not written this minute's raw.jsonl after {} s (--live-wait-secs): retried later; see the live path's log",
                    args.live_wait_secs
                ),
            }
            .into());
        }
        if !said {
            tracing::info!(run_dir = %run_dir.display(), "the live path captures this minute: waiting for its raw file");
            said = true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// `Skipped` when the live path, capturing a later minute, journaled nothing in this one (it took
/// the lease after the minute ended: the first minute after `make up`, or after an outage the
/// DAG did not cover): it will never write this minute's file, and polling the API now would
/// split the stream it polls.
fn never_captured(
    client: &mut postgres::Client,
    end: Option<DateTime<Utc>>,
    run_dir: &Path,
) -> Result<()> {
    let (Some(end), Some(live)) = (end, lease::minute(client)?) else {
        return Ok(());
    };
    if live <= end || run_dir.join(JOURNAL).exists() {
        return Ok(());
    }
    Err(Failure::Skipped(format!(
        "the live path captures the minute ending {} and captured nothing in the one ending {}: nobody polled the API then",
        live.to_rfc3339_opts(SecondsFormat::Secs, true),
        end.to_rfc3339_opts(SecondsFormat::Secs, true)
    ))
    .into())
}

/// Takes into the collector what a live path journaled in this minute before it died (its
/// payments and its rejections): they were captured, and the minute's raw file must hold them.
/// How many payments.
pub fn take_over_journal(run_dir: &Path, collector: &mut Collector<StageFiles>) -> Result<u64> {
    let read = |name: &str| -> Result<String> {
        let path = run_dir.join(name);
        match std::fs::read(&path) {
            // A last line the live path never finished is cut off: never durable, never used.
            Ok(bytes) => {
                let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                Ok(String::from_utf8_lossy(&bytes[..whole]).into_owned())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    };
    let before = collector.records();
    collector.import(&read(JOURNAL)?)?;
    for line in read(REJECTED_JOURNAL)?.lines() {
        let rejected: Rejected = serde_json::from_str(line)
            .with_context(|| format!("a line of {REJECTED_JOURNAL} is not a rejected record"))?;
        collector.out().reject(&rejected)?;
    }
    let taken = collector.records() - before;
    if taken > 0 {
        tracing::info!(
            records = taken,
            "took over the payments a live path journaled in this minute before it stopped"
        );
    }
    Ok(taken)
}

/// While `extract` polls the API itself, looks every few seconds whether the live path holds
/// its lease again: then `extract` stops, and the live path captures on.
pub struct LiveWatch {
    client: Option<postgres::Client>,
    stale: Duration,
    last: Instant,
}

impl LiveWatch {
    const EVERY: Duration = Duration::from_secs(2);

    pub fn new(args: &ExtractArgs) -> Self {
        LiveWatch {
            client: args.db.connect().ok(),
            stale: Duration::from_secs(args.live_stale_secs),
            last: Instant::now(),
        }
    }

    /// Whether the live path captures again (asked at most every 2 s).
    pub fn back(&mut self) -> bool {
        if self.last.elapsed() < Self::EVERY {
            return false;
        }
        self.last = Instant::now();
        let stale = self.stale;
        self.client
            .as_mut()
            .is_some_and(|c| lease::fresh(c, stale).unwrap_or(false))
    }
}
