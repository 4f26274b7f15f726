//! `fraudctl extract`: payments API (or a CSV in the data set's layout) → `raw.jsonl`, plus
//! `raw.rejected.jsonl` with the reason for every record that could not be used.

pub(crate) mod collector;
mod csv_source;
#[cfg(feature = "services")]
mod handover;
#[cfg(feature = "services")]
pub(crate) mod http_source;

pub use collector::RAW_SCHEMA;
pub(crate) use collector::{trans_num_key, Collector, Sink, StageFiles};

use std::path::PathBuf;

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::Args;
use serde::Serialize;

use crate::error::Failure;
use crate::pan::PanProtector;
use crate::rundir::{log_started, RunArgs, RunDir};
use crate::stagefile::read_header;

/// Options of `fraudctl extract`.
#[derive(Debug, Clone, Args)]
pub struct ExtractArgs {
    #[command(flatten)]
    pub run: RunArgs,

    #[command(flatten)]
    pub api: ApiArgs,

    /// Read transactions from this CSV file (the data set's layout: fraudTrain.csv, fraudTest.csv)
    /// instead of the API; `current_time` is taken from trans_date_trans_time, read as UTC.
    #[arg(long, env = "FRAUDCTL_EXTRACT_CSV", value_name = "PATH")]
    pub from_csv: Option<PathBuf>,

    /// Stop after this many valid transactions (1 to 100000000) [default: 5000 from the API,
    /// all rows of a CSV].
    #[arg(long, env = "FRAUDCTL_MAX_RECORDS",
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub max_records: Option<u64>,

    /// Stop polling the API after this many seconds (keep it under the DAG's schedule interval;
    /// 1 to 86400).
    #[arg(long, env = "FRAUDCTL_MAX_SECONDS", default_value_t = 45,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub max_seconds: u64,

    /// Fetch again even if the run directory already holds its raw file (by default that file
    /// is reused: backfills re-process what the run captured).
    #[arg(long, env = "FRAUDCTL_REFETCH")]
    pub refetch: bool,

    /// End of the data interval this run stands for (RFC 3339, e.g. Airflow's
    /// data_interval_end). With no raw file captured and an interval that ended more than
    /// --max-lag-secs ago, the run is skipped (exit 99): the API only serves the present.
    #[arg(long, env = "FRAUDCTL_INTERVAL_END", value_name = "TIME")]
    pub interval_end: Option<DateTime<Utc>>,

    /// How far in the past an interval may end and still be fetched from the API, in seconds
    /// (at most a year).
    #[arg(long, env = "FRAUDCTL_MAX_LAG_SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(0..=31_536_000))]
    pub max_lag_secs: u64,

    /// While the live path (`fraudctl live`) holds its lease, wait at most this many seconds for
    /// the raw file it writes in this run directory instead of polling the API (then exit 3: its
    /// minute is not closed yet); when nobody holds the lease, poll the API, taking over what a
    /// live path journaled here before it stopped. 0 (the default outside the DAG): never look
    /// at the lease (0 to 3600).
    #[arg(long, env = "FRAUDCTL_LIVE_WAIT_SECS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub live_wait_secs: u64,

    /// A live path whose last heartbeat is older than this many seconds is down (1 to 3600).
    #[arg(long, env = "FRAUDCTL_LIVE_STALE_SECS", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub live_stale_secs: u64,

    /// The database of the live path's lease (read only with --live-wait-secs).
    #[cfg(feature = "services")]
    #[command(flatten)]
    pub db: crate::db::DbArgs,
}

/// How the payments API is polled: `extract`'s settings of the API (`fraudctl live` polls it
/// with them too).
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// URL of the payments API's current-transactions endpoint (http:// or https://).
    #[arg(
        long,
        env = "FRAUDCTL_API_URL",
        default_value = "http://127.0.0.1:8000/current-transactions",
        value_parser = crate::setting::web_url
    )]
    pub api_url: String,

    /// Pause between two API requests, in milliseconds (at most 60000).
    #[arg(long, env = "FRAUDCTL_POLL_INTERVAL_MS", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub poll_interval_ms: u64,

    /// Timeout of one API request, in seconds (1 to 600).
    #[arg(long, env = "FRAUDCTL_REQUEST_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub request_timeout_secs: u64,

    /// Retries of a request that failed with a 5xx, 429, timeout or network error, with
    /// exponential backoff (0.2 s doubling, at most 5 s; 0 to 20).
    #[arg(long, env = "FRAUDCTL_API_RETRIES", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(0..=20))]
    pub retries: u32,

    /// Largest response body read, in bytes (the API sends one transaction, under a kilobyte);
    /// a larger body is rejected unread, its first bytes kept for diagnosis.
    #[arg(long, env = "FRAUDCTL_API_MAX_BODY_BYTES", default_value_t = 1 << 20,
          value_parser = clap::value_parser!(u64).range(1024..=(256 << 20)))]
    pub max_body_bytes: u64,
}

/// What `extract` prints on stdout.
#[derive(Debug, Serialize)]
pub struct ExtractSummary {
    pub stage: &'static str,
    pub run_id: String,
    pub source: String,
    pub records: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub requests: u64,
    pub source_errors: u64,
    /// The source error that ended polling after records were captured (they are kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<String>,
    pub reused: bool,
    pub raw_file: PathBuf,
}

pub fn run(args: &ExtractArgs) -> Result<ExtractSummary> {
    let from_api = args.from_csv.is_none();
    let past = args
        .interval_end
        .is_some_and(|end| (Utc::now() - end).num_seconds() > args.max_lag_secs as i64);
    #[cfg(feature = "services")]
    if from_api
        && !past
        && !args.refetch
        && args.live_wait_secs > 0
        && !args.run.run_dir.join("raw.jsonl").exists()
    {
        // Before taking the run directory: the live path holds it while it captures the minute.
        handover::wait_for_live(args, &args.run.run_dir)?;
    }
    let dir = RunDir::create(&args.run, "extract")?;
    let source = match &args.from_csv {
        Some(path) => format!("csv:{}", path.display()),
        None => crate::redact::url(&args.api.api_url),
    };
    if !args.refetch {
        if let Some(summary) = captured_already(&dir, &source)? {
            return Ok(summary);
        }
    }
    if let (true, true, Some(end)) = (from_api, past, args.interval_end) {
        return Err(Failure::Skipped(format!(
            "no raw file was captured for the interval ending {} ({} min ago) and the payments API only serves current transactions: nothing to re-process for this run",
            end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            (Utc::now() - end).num_minutes()
        ))
        .into());
    }

    let pan = PanProtector::from_env()?;
    let mut collector = Collector::new(StageFiles::create(&dir, &source)?, pan);
    #[cfg(feature = "services")]
    if from_api {
        handover::take_over_journal(&dir.path, &mut collector)?;
    }
    log_started("extract", args.max_records.unwrap_or(0));
    let stats = match &args.from_csv {
        Some(path) => csv_source::read(path, args.max_records.unwrap_or(u64::MAX), &mut collector)?,
        None => poll_api(args, &mut collector)?,
    };
    let (files, duplicates) = collector.into_parts();
    let (records, rejected) = files.finish(duplicates, &stats)?;
    Ok(ExtractSummary {
        stage: "extract",
        run_id: dir.run_id.clone(),
        source,
        records,
        rejected,
        duplicates,
        requests: stats.requests,
        source_errors: stats.source_errors,
        stopped_by: stats.stopped_by,
        reused: false,
        raw_file: dir.raw(),
    })
}

/// The summary of the run's raw file when it was captured already (reused: a task retried after
/// its extract finished does not poll the API again).
fn captured_already(dir: &RunDir, source: &str) -> Result<Option<ExtractSummary>> {
    let Some(header) = read_header(&dir.raw())? else {
        return Ok(None);
    };
    tracing::info!(file = %dir.raw().display(), records = header.records(), "raw file already captured for this run, reusing it (--refetch to fetch again)");
    Ok(Some(ExtractSummary {
        stage: "extract",
        run_id: dir.run_id.clone(),
        source: source.to_owned(),
        records: header.records(),
        rejected: header.count("rejected"),
        duplicates: header.count("duplicates"),
        requests: 0,
        source_errors: 0,
        stopped_by: None,
        reused: true,
        raw_file: dir.raw(),
    }))
}

#[cfg(feature = "services")]
fn poll_api(args: &ExtractArgs, collector: &mut Collector<StageFiles>) -> Result<SourceStats> {
    use std::time::Duration;
    http_source::poll(
        &http_source::Polling {
            url: args.api.api_url.clone(),
            max_records: args.max_records.unwrap_or(5000),
            max_time: Duration::from_secs(args.max_seconds),
            interval: Duration::from_millis(args.api.poll_interval_ms),
            timeout: Duration::from_secs(args.api.request_timeout_secs),
            retries: args.api.retries,
            max_body_bytes: args.api.max_body_bytes as usize,
        },
        collector,
        (args.live_wait_secs > 0).then(|| handover::LiveWatch::new(args)),
    )
}

/// A library built without the `services` feature (the fuzz build) has no HTTP client.
#[cfg(not(feature = "services"))]
fn poll_api(_: &ExtractArgs, _: &mut Collector<StageFiles>) -> Result<SourceStats> {
    Err(Failure::Config(
        "this fraudctl was built without the `services` feature: it cannot poll the payments API"
            .into(),
    )
    .into())
}

/// Counters a source reports.
#[derive(Debug, Default)]
pub(crate) struct SourceStats {
    pub requests: u64,
    pub source_errors: u64,
    pub stopped_by: Option<String>,
}
