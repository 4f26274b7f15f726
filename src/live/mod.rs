//! `fraudctl live`: the live path. It polls the payments API without pause, writes each payment
//! durably into the journal of its minute (the every-minute DAG's run directory of that
//! interval) before anything else, and takes the payments of each micro-batch (those captured
//! while the one before was processed: at most `--batch-ms` of them, or `--batch-max`) through
//! transform, score, load and alert in this
//! process, with the stages' own code: a predicted fraud is emailed within about a second of its
//! capture. When a minute ends its journal becomes the minute's `raw.jsonl`, which the DAG's
//! run of that interval reuses: transform to alert converge to the same rows and send nothing
//! new (the DAG is the system of record and the safety net).
//!
//! One capturer at a time ([`lease`]): a second process waits for the lease; `extract` polls the
//! API itself only while nobody holds it. SIGTERM (or `--for`) ends the capture, finishes the
//! micro-batch under way and exits 0; a process that dies loses nothing it journaled: the next
//! one processes its journals again and finishes their minutes.

pub(crate) mod journal;
pub mod lease;
mod metrics;
mod minute;
mod process;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::Utc;
use clap::Args;

use metrics::Metrics;
pub use minute::Minute;
use process::{Batch, Processor};

use crate::alert::AlertOptions;
use crate::db::DbArgs;
use crate::extract::http_source;
use crate::extract::ApiArgs;
use crate::pan::PanProtector;
use crate::retry::ServiceError;
use crate::score::ScoreOptions;

/// Options of `fraudctl live`: its own, then the stages' (the same flags and variables).
#[derive(Debug, Clone, Args)]
pub struct LiveArgs {
    /// The folder that holds the DAG's run directories (`fraud_pipeline/<interval end>/`): the
    /// live path writes each minute's payments there (the Airflow Variable fraudctl_runs_root).
    #[arg(long, env = "FRAUDCTL_RUNS_ROOT", value_name = "DIR")]
    pub runs_root: PathBuf,

    /// Longest a payment waits for its micro-batch while the one before is being processed, in
    /// milliseconds (a payment captured while nothing is goes at once): a micro-batch goes when
    /// its first payment has waited this long (10 to 60000).
    #[arg(long, env = "FRAUDCTL_LIVE_BATCH_MS", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub batch_ms: u64,

    /// Most payments in a micro-batch: it goes as soon as it holds this many (1 to 1000000).
    #[arg(long, env = "FRAUDCTL_LIVE_BATCH_MAX", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batch_max: u64,

    /// Where Prometheus metrics (`/metrics`) and the health check (`/healthz`) are served,
    /// HOST:PORT; `off` serves none.
    #[arg(
        long,
        env = "FRAUDCTL_LIVE_METRICS_LISTEN",
        default_value = "127.0.0.1:9464"
    )]
    pub metrics_listen: String,

    /// Stop after this long (e.g. `90s`, `5m`, `2h`), as on SIGTERM; without it, run until
    /// SIGTERM or SIGINT.
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    pub run_for: Option<Duration>,

    #[command(flatten)]
    pub api: ApiArgs,

    /// Feature spec of the model (transform's --feature-spec).
    #[arg(long, env = "FRAUDCTL_FEATURE_SPEC", default_value = crate::transform::DEFAULT_FEATURE_SPEC)]
    pub feature_spec: PathBuf,

    #[command(flatten)]
    pub score: ScoreOptions,

    #[command(flatten)]
    pub alert: AlertOptions,

    #[command(flatten)]
    pub db: DbArgs,
}

/// `90s`, `5m`, `2h` or a number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(text.trim_end_matches(['s', 'm', 'h']).len());
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 90s, 5m or 2h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{text:?} is not a duration such as 90s, 5m or 2h")),
    };
    Ok(Duration::from_secs(secs))
}

/// What `fraudctl live` prints when it stops.
#[derive(Debug, serde::Serialize)]
pub struct LiveSummary {
    pub command: &'static str,
    pub captured: u64,
    pub rejected: u64,
    pub micro_batches: u64,
    pub emails: u64,
    pub alerts_sent: u64,
    pub stopped_by: &'static str,
}

/// Runs the live path until SIGTERM, SIGINT or `--for`.
pub fn run(args: &LiveArgs) -> Result<LiveSummary> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("cannot handle SIGTERM and SIGINT")?;
    }
    let deadline = args.run_for.map(|d| Instant::now() + d);
    let stopping = {
        let stop = Arc::clone(&stop);
        move || stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d)
    };
    let pan = PanProtector::from_env()?;
    let metrics = Arc::new(Metrics::default());
    if args.metrics_listen != "off" {
        metrics::serve(&args.metrics_listen, Arc::clone(&metrics))?;
    }
    let holder = format!(
        "pid {} on {}",
        std::process::id(),
        hostname().unwrap_or_else(|| "an unknown host".into())
    );
    let Some(lease) = lease::Lease::acquire(&args.db, holder, &stopping)? else {
        return Ok(summary(&metrics, "stopped before it held the lease"));
    };
    metrics.lease_held.store(1, Ordering::Relaxed);
    let mut processor = Processor::new(args, Arc::clone(&metrics))?;
    let (batches, queue) = mpsc::channel::<Batch>();
    let queued = Arc::clone(&metrics);
    let worker = std::thread::Builder::new()
        .name("live-process".into())
        .spawn(move || {
            for batch in queue {
                process_until_done(&mut processor, batch);
                queued.queued_batches.fetch_sub(1, Ordering::Relaxed);
            }
        })
        .context("cannot start the live path's processing thread")?;
    let mut capture = Capture::new(args, pan, batches, Arc::clone(&metrics))?;
    let captured = capture.run(lease, &stopping);
    drop(capture); // its queue closes: the worker finishes what it holds, then ends
    worker.join().expect("the processing thread does not panic");
    captured.map(|stopped_by| summary(&metrics, stopped_by))
}

fn summary(m: &Metrics, stopped_by: &'static str) -> LiveSummary {
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    LiveSummary {
        command: "live",
        captured: get(&m.captured),
        rejected: get(&m.rejected),
        micro_batches: get(&m.batches),
        emails: get(&m.emails),
        alerts_sent: get(&m.alerts_sent),
        stopped_by,
    }
}

/// Processes a micro-batch, trying again (1 s, doubling, at most 30 s) while the database or
/// the SMTP server is away; its payments are in their minute's journal whatever happens, and
/// the DAG's run of the minute processes them too.
fn process_until_done(processor: &mut Processor, batch: Batch) {
    let mut wait = Duration::from_secs(1);
    for attempt in 1.. {
        match processor.process(&batch) {
            Ok(summary) => {
                println!(
                    "{}",
                    serde_json::to_string(&summary).expect("a summary serialises")
                );
                return;
            }
            Err(e) => {
                processor.failed();
                let code = crate::error::exit_code_of(&e);
                if code != crate::error::exit::UNAVAILABLE && attempt >= 3 {
                    tracing::error!(run_id = %batch.run_id, records = batch.records, error = %format!("{e:#}"), "a micro-batch keeps failing; left to the DAG's run of its minute");
                    return;
                }
                tracing::warn!(run_id = %batch.run_id, records = batch.records, attempt, error = %format!("{e:#}"), "a micro-batch failed; trying again");
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// The capture loop's state: the API's client, the open minute, when its pending payments
/// started waiting.
struct Capture {
    args: LiveArgs,
    pan: PanProtector,
    client: reqwest::blocking::Client,
    source: String,
    batches: mpsc::Sender<Batch>,
    metrics: Arc<Metrics>,
    minute: Option<Minute>,
    waiting_since: Option<Instant>,
    /// Consecutive failed requests (the backoff between them grows with them).
    failures: u32,
}

impl Capture {
    fn new(
        args: &LiveArgs,
        pan: PanProtector,
        batches: mpsc::Sender<Batch>,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        Ok(Capture {
            client: http_source::client(Duration::from_secs(args.api.request_timeout_secs))?,
            source: format!("live:{}", crate::redact::url(&args.api.api_url)),
            args: args.clone(),
            pan,
            batches,
            metrics,
            minute: None,
            waiting_since: None,
            failures: 0,
        })
    }

    /// Captures until `stopping`; why it stopped.
    fn run(
        &mut self,
        mut lease: lease::Lease,
        stopping: &impl Fn() -> bool,
    ) -> Result<&'static str> {
        self.recover()?;
        let mut why = "SIGTERM, SIGINT or --for";
        while !stopping() {
            let minute = self
                .minute
                .as_ref()
                .map_or(String::new(), |m| m.run_id().to_string());
            if !lease.beat(&minute)? {
                why = "another process took the lease while the database was away";
                break;
            }
            self.metrics
                .last_loop
                .store(metrics::now_secs(), Ordering::Relaxed);
            self.poll_once()?;
            self.hand_off_if_due(false);
            if self.args.api.poll_interval_ms > 0 || self.failures > 0 {
                std::thread::sleep(self.pause());
            }
        }
        self.hand_off_if_due(true);
        if let Some(minute) = self.minute.take() {
            if Utc::now() >= minute.end {
                self.close(minute)?;
            }
        }
        lease.release();
        self.metrics.lease_held.store(0, Ordering::Relaxed);
        Ok(why)
    }

    /// Before capturing: the minutes a process that died left open are processed again and
    /// closed (unless the DAG's run of one holds it: it took their journal over).
    fn recover(&mut self) -> Result<()> {
        let current = Minute::end_of(Utc::now());
        for end in Minute::left_open(&self.args.runs_root) {
            if end >= current {
                continue; // the minute under way: opened when the loop starts
            }
            match Minute::open(&self.args.runs_root, end, &self.pan, 0) {
                Ok(Some(mut minute)) => {
                    self.send(&mut minute);
                    self.close(minute)?;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::info!(minute = %end, error = %format!("{e:#}"), "a minute left open is being captured by the DAG's run: left to it")
                }
            }
        }
        Ok(())
    }

    /// The pause before the next request: the poll interval, longer after failures.
    fn pause(&self) -> Duration {
        let interval = Duration::from_millis(self.args.api.poll_interval_ms);
        match self.failures {
            0 => interval,
            n => interval.max(Duration::from_millis(200 << n.min(5)).min(Duration::from_secs(5))),
        }
    }

    /// One request: its rows journaled, in the minute they were captured in, and made durable.
    fn poll_once(&mut self) -> Result<()> {
        let (url, max_body) = (
            &self.args.api.api_url,
            self.args.api.max_body_bytes as usize,
        );
        let shown = crate::redact::url(url);
        let body = http_source::fetch(&self.client, url, &shown, max_body);
        let now = Utc::now();
        self.roll_minute(now)?;
        let minute = self.minute.as_mut().expect("a minute is open");
        minute.requests += 1;
        Metrics::add(&self.metrics.requests, 1);
        let origin = format!(
            "{shown} at {}",
            now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        );
        match body {
            Ok(body) => {
                self.failures = 0;
                let (kept, rejected) = (minute.collector.records(), minute.collector.rejected());
                minute.collector.captured_at(now.timestamp_millis());
                http_source::take(body, &origin, max_body, &mut minute.collector)?;
                minute.collector.out().sync()?;
                let new = minute.collector.records() - kept;
                Metrics::add(&self.metrics.captured, new);
                Metrics::add(
                    &self.metrics.rejected,
                    minute.collector.rejected() - rejected,
                );
                Metrics::add(&self.metrics.backlog, new);
                if new > 0 {
                    self.waiting_since.get_or_insert_with(Instant::now);
                }
            }
            Err(e) => self.failed(e),
        }
        Ok(())
    }

    /// A failed request: counted, said (the first of a run of them, then every 30th).
    fn failed(&mut self, e: ServiceError) {
        let minute = self.minute.as_mut().expect("a minute is open");
        minute.source_errors += 1;
        Metrics::add(&self.metrics.source_errors, 1);
        if self.failures.is_multiple_of(30) {
            tracing::warn!(error = %e, failures = self.failures + 1, "the payments API did not answer; trying on");
        }
        self.failures += 1;
    }

    /// Opens the minute `now` falls in, closing the one before (its pending payments sent to
    /// be processed first).
    fn roll_minute(&mut self, now: chrono::DateTime<Utc>) -> Result<()> {
        let end = Minute::end_of(now);
        if self.minute.as_ref().is_some_and(|m| m.end == end) {
            return Ok(());
        }
        if let Some(mut done) = self.minute.take() {
            self.send(&mut done);
            self.close(done)?;
        }
        let lock_timeout = 60;
        self.minute = Minute::open(&self.args.runs_root, end, &self.pan, lock_timeout)?;
        anyhow::ensure!(
            self.minute.is_some(),
            "the run directory of the minute under way ({}) holds a raw file already: another process captured it",
            Minute::path(&self.args.runs_root, end).display()
        );
        Ok(())
    }

    fn close(&self, minute: Minute) -> Result<()> {
        let run_id = minute.run_id().to_string();
        let records = minute.close(&self.source)?;
        tracing::info!(minute = %run_id, records, "minute closed: its raw.jsonl is whole");
        Ok(())
    }

    /// Sends the pending payments to be processed when their micro-batch is due (`now`: in
    /// any case): nothing is being processed, or the first has waited `--batch-ms`, or there
    /// are `--batch-max`. At a few payments a second each goes alone, at once; at thousands,
    /// those captured while a micro-batch is processed make the next.
    fn hand_off_if_due(&mut self, now: bool) {
        let Some(minute) = self.minute.as_mut() else {
            return;
        };
        let idle = self.metrics.queued_batches.load(Ordering::Relaxed) == 0;
        let waited = self
            .waiting_since
            .is_some_and(|t| idle || t.elapsed() >= Duration::from_millis(self.args.batch_ms));
        let full = minute.collector.out().pending() >= self.args.batch_max;
        if now || waited || full {
            let mut minute = self.minute.take().expect("checked");
            self.send(&mut minute);
            self.minute = Some(minute);
        }
    }

    /// Sends `minute`'s pending payments to be processed.
    fn send(&mut self, minute: &mut Minute) {
        self.waiting_since = None;
        let (lines, records) = minute.collector.out().take_pending();
        if records == 0 {
            return;
        }
        let batch = Batch {
            run_id: minute.run_id().to_string(),
            lines,
            records,
        };
        Metrics::add(&self.metrics.queued_batches, 1);
        // The worker ends only after this loop: the queue is open.
        let _ = self.batches.send(batch);
    }
}

/// This machine's name, for the lease's holder.
fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}
