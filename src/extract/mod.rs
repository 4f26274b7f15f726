//! `fraudctl extract`: payments API (or a CSV in the data set's layout) → `raw.jsonl`, plus
//! `raw.rejected.jsonl` with the reason for every record that could not be used.

mod csv_source;
#[cfg(feature = "services")]
mod http_source;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::Args;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::Failure;
use crate::pan::{masked_excerpt, PanProtector};
use crate::rundir::{log_started, RunArgs, RunDir};
use crate::stagefile::{read_header, Header, Rejected, StageWriter};
use crate::transaction::{redact, validate_into, Row, Transaction};

pub const RAW_SCHEMA: &str = "fraudctl.raw";

/// Options of `fraudctl extract`.
#[derive(Debug, Clone, Args)]
pub struct ExtractArgs {
    #[command(flatten)]
    pub run: RunArgs,

    /// URL of the payments API's current-transactions endpoint.
    #[arg(
        long,
        env = "FRAUDCTL_API_URL",
        default_value = "http://127.0.0.1:8000/current-transactions"
    )]
    pub api_url: String,

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
    let dir = RunDir::create(&args.run, "extract")?;
    let source = match &args.from_csv {
        Some(path) => format!("csv:{}", path.display()),
        None => crate::redact::url(&args.api_url),
    };
    if !args.refetch {
        if let Some(header) = read_header(&dir.raw())? {
            tracing::info!(file = %dir.raw().display(), records = header.records(), "raw file already captured for this run, reusing it (--refetch to fetch again)");
            return Ok(ExtractSummary {
                stage: "extract",
                run_id: dir.run_id.clone(),
                source,
                records: header.records(),
                rejected: header.count("rejected"),
                duplicates: header.count("duplicates"),
                requests: 0,
                source_errors: 0,
                stopped_by: None,
                reused: true,
                raw_file: dir.raw(),
            });
        }
    }
    if let (None, Some(end)) = (&args.from_csv, args.interval_end) {
        let lag = Utc::now() - end;
        if lag.num_seconds() > args.max_lag_secs as i64 {
            return Err(Failure::Skipped(format!(
                "no raw file was captured for the interval ending {} ({} min ago) and the payments API only serves current transactions: nothing to re-process for this run",
                end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                lag.num_minutes()
            ))
            .into());
        }
    }

    let pan = PanProtector::from_env()?;
    let mut collector = Collector::new(&dir, pan, &source)?;
    log_started("extract", args.max_records.unwrap_or(0));
    let stats = match &args.from_csv {
        Some(path) => csv_source::read(path, args.max_records.unwrap_or(u64::MAX), &mut collector)?,
        None => poll_api(args, &mut collector)?,
    };
    let (records, rejected, duplicates) = collector.finish(&stats)?;
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

#[cfg(feature = "services")]
fn poll_api(args: &ExtractArgs, collector: &mut Collector) -> Result<SourceStats> {
    use std::time::Duration;
    http_source::poll(
        &http_source::Polling {
            url: args.api_url.clone(),
            max_records: args.max_records.unwrap_or(5000),
            max_time: Duration::from_secs(args.max_seconds),
            interval: Duration::from_millis(args.poll_interval_ms),
            timeout: Duration::from_secs(args.request_timeout_secs),
            retries: args.retries,
            max_body_bytes: args.max_body_bytes as usize,
        },
        collector,
    )
}

/// A library built without the `services` feature (the fuzz build) has no HTTP client.
#[cfg(not(feature = "services"))]
fn poll_api(_: &ExtractArgs, _: &mut Collector) -> Result<SourceStats> {
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

/// Validates, de-duplicates and routes records to the raw or the rejected file.
pub(crate) struct Collector {
    raw: StageWriter,
    rejected: StageWriter,
    seen: HashSet<u128>,
    duplicates: u64,
    /// Checks the rows of [`Collector::row`].
    checker: Checker,
    /// A row's line, reused ([`Collector::row`]).
    line: Vec<u8>,
}

impl Collector {
    fn new(dir: &RunDir, pan: PanProtector, source: &str) -> Result<Self> {
        let meta = serde_json::json!({ "source": source });
        Ok(Collector {
            raw: StageWriter::create(
                &dir.raw(),
                Header::new(RAW_SCHEMA, &dir.run_id, "extract", meta.clone()),
            )?,
            rejected: StageWriter::create(
                &dir.raw_rejected(),
                Header::new(
                    crate::stagefile::REJECTED_SCHEMA,
                    &dir.run_id,
                    "extract",
                    meta,
                ),
            )?,
            seen: HashSet::new(),
            duplicates: 0,
            checker: Checker::new(pan),
            line: Vec::new(),
        })
    }

    pub fn records(&self) -> u64 {
        self.raw.records()
    }

    /// Makes room for the keys of about `records` rows, so that de-duplicating a big file
    /// never re-hashes the keys seen so far.
    pub fn expect(&mut self, records: u64) {
        self.seen
            .reserve(usize::try_from(records).unwrap_or(usize::MAX));
    }

    /// The rows that follow were captured at `ms` (epoch ms): when the response that carries
    /// them arrived.
    pub fn captured_at(&mut self, ms: i64) {
        self.checker.captured_at_ms = Some(ms);
    }

    /// The card-number protector rows are checked with ([`Checker`]).
    pub fn pan(&self) -> &PanProtector {
        &self.checker.pan
    }

    #[cfg(feature = "services")]
    pub fn rejected(&self) -> u64 {
        self.rejected.records()
    }

    /// One decoded row from `origin` (a URL and request number, or a file and line).
    pub fn row(&mut self, row: &Map<String, Value>, origin: &str) -> Result<()> {
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        let redacted = |pan: &PanProtector| redact(row, pan);
        let checked = self.checker.check(row, &mut line, redacted);
        let taken = self.take(checked, || origin.to_string(), redacted);
        let kept = match taken {
            Ok(true) => self.keep(&line, 1),
            other => other.map(|_| ()),
        };
        self.line = line;
        kept
    }

    /// A row checked by a [`Checker`] (on any thread), in input order: whether its line is to
    /// be kept ([`Collector::keep`]: a valid row whose trans_num was not seen before in this
    /// run), else it is rejected. `origin` and `redacted` make where the row came from and the
    /// row as a rejection keeps it.
    pub fn take(
        &mut self,
        checked: Checked,
        origin: impl FnOnce() -> String,
        redacted: impl FnOnce(&PanProtector) -> Value,
    ) -> Result<bool> {
        match checked {
            Checked::Valid { key } if self.seen.insert(key) => return Ok(true),
            Checked::Valid { .. } => {
                self.duplicates += 1;
                let kept = redacted(&self.checker.pan);
                // As the kept row has it: its digit runs masked, as the reason's are anyway.
                let trans_num = kept["trans_num"].as_str().unwrap_or_default();
                let reason =
                    format!("duplicate trans_num {trans_num} (already extracted in this run)");
                self.reject(reason, &origin(), Some(kept), None)
            }
            Checked::Invalid { reason, redacted } => {
                self.reject(reason, &origin(), Some(redacted), None)
            }
        }
        .map(|()| false)
    }

    /// Writes the lines of `records` rows [`Collector::take`] kept, in their order.
    pub fn keep(&mut self, lines: &[u8], records: u64) -> Result<()> {
        self.raw.write_lines(lines, records)
    }

    /// A row or body that could not be decoded at all; its first 4096 characters are kept,
    /// digit runs masked.
    pub fn unreadable(&mut self, reason: String, origin: &str, text: &str) -> Result<()> {
        self.reject(reason, origin, None, Some(masked_excerpt(text, 4096)))
    }

    fn reject(
        &mut self,
        reason: String,
        origin: &str,
        record: Option<Value>,
        body: Option<String>,
    ) -> Result<()> {
        let reason = masked_excerpt(&reason, 1000);
        tracing::debug!(origin, reason = %reason, "record rejected");
        self.rejected.write(&Rejected {
            reason,
            origin: origin.to_string(),
            record,
            body,
        })
    }

    fn finish(self, stats: &SourceStats) -> Result<(u64, u64, u64)> {
        let rejected = self.rejected.records();
        let counts = |extra: &[(&str, u64)]| -> BTreeMap<String, u64> {
            extra.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        let shared = [
            ("duplicates", self.duplicates),
            ("requests", stats.requests),
            ("source_errors", stats.source_errors),
        ];
        // The rejected file first: the raw file's presence marks the extraction as complete.
        self.rejected.finish(counts(&shared))?;
        let header = self.raw.finish(counts(
            &[shared.as_slice(), &[("rejected", rejected)]].concat(),
        ))?;
        if rejected > 0 {
            tracing::warn!(
                rejected,
                records = header.records(),
                "some records were rejected; see raw.rejected.jsonl"
            );
        }
        Ok((header.records(), rejected, self.duplicates))
    }
}

/// A row validated (its `raw.jsonl` line written by [`Checker::check`]), or why it is rejected and
/// the row as a rejection keeps it (card number masked). Made on any thread;
/// [`Collector::take`] keeps them in order.
pub(crate) enum Checked {
    Valid { key: u128 },
    Invalid { reason: String, redacted: Value },
}

/// Validates rows into `raw.jsonl` lines, on one thread: the card-number protector, and the
/// transaction each row is validated into (its memory reused from row to row).
pub(crate) struct Checker {
    pan: PanProtector,
    tx: Transaction,
    /// When the rows being checked were captured (the API's response arrived), epoch ms; none
    /// for a file.
    pub captured_at_ms: Option<i64>,
}

impl Checker {
    pub fn new(pan: PanProtector) -> Self {
        Checker {
            pan,
            tx: Transaction::default(),
            captured_at_ms: None,
        }
    }

    /// Validates `row`; a valid one's line (with its newline) is appended to `line`. `redacted`
    /// makes the row as a rejection keeps it ([`redact`]).
    pub fn check(
        &mut self,
        row: &impl Row,
        line: &mut Vec<u8>,
        redacted: impl FnOnce(&PanProtector) -> Value,
    ) -> Checked {
        match validate_into(row, &self.pan, &mut self.tx) {
            Ok(()) => {
                self.tx.captured_at_ms = self.captured_at_ms;
                self.tx.write_line(line);
                Checked::Valid {
                    key: trans_num_key(&self.tx.trans_num),
                }
            }
            Err(reason) => Checked::Invalid {
                reason,
                redacted: redacted(&self.pan),
            },
        }
    }
}

/// A compact key for de-duplication: the 128 bits of a lower-case hex trans_num (the data set's
/// form), else the first 128 bits of its SHA-256. Bounded memory for a million records. Exact
/// bytes, as the database's key compares them: "189A…" and "189a…" are two transactions.
pub(crate) fn trans_num_key(trans_num: &str) -> u128 {
    let lower_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    if trans_num.len() == 32 && trans_num.bytes().all(|b| lower_hex(&b)) {
        if let Ok(v) = u128::from_str_radix(trans_num, 16) {
            return v;
        }
    }
    let digest = Sha256::digest(trans_num.as_bytes());
    u128::from_be_bytes(digest[..16].try_into().expect("16 bytes")) | 1 << 127
}

#[cfg(test)]
mod tests {
    use super::trans_num_key;

    #[test]
    fn trans_num_keys_tell_case_apart_as_the_database_does() {
        let lower = "189a2c4b6d8e0f1a2b3c4d5e6f708192";
        let upper = "189A2C4B6D8E0F1A2B3C4D5E6F708192";
        assert_ne!(trans_num_key(lower), trans_num_key(upper));
        assert_eq!(trans_num_key(lower), trans_num_key(lower));
        assert_ne!(trans_num_key("abc"), trans_num_key("ABC"));
    }
}
