//! A micro-batch through the stages, in this process, with the stages' own code: its payments
//! become the `raw.jsonl` of a scratch run directory, then `transform`, `score`, `load` and
//! `alert` run on it as they run on a minute's (their `run` functions, their files), and the
//! directory is removed. Everything it does converges: a micro-batch processed twice (after a
//! crash, or by the every-minute DAG that reuses its minute) leaves the same rows and sends no
//! email twice.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::metrics::Metrics;
use super::LiveArgs;
use crate::audit;
use crate::extract::RAW_SCHEMA;
use crate::rundir::{RunArgs, RunDir};
use crate::stagefile::{Header, StageWriter};
use crate::{alert, load, score, transform};

/// Payments captured together, waiting to be processed: `raw.jsonl` lines of one minute.
pub struct Batch {
    /// The run id of their minute (`live__20261206T101500`).
    pub run_id: String,
    pub lines: Vec<u8>,
    pub records: u64,
}

/// What a micro-batch did: the JSON line `fraudctl live` prints for it.
#[derive(Debug, Serialize)]
pub struct BatchSummary {
    pub event: &'static str,
    pub run_id: String,
    pub records: u64,
    pub frauds: u64,
    pub inserted: i64,
    pub emails: usize,
    pub alerts_sent: usize,
    /// Each step's wall time, in milliseconds.
    pub ms: StepTimes,
    /// Of the alerts the SMTP server accepted since the previous micro-batch: the longest time
    /// from a payment's capture to its acceptance, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture_to_email_ms_max: Option<i64>,
}

#[derive(Debug, Default, Serialize)]
pub struct StepTimes {
    pub write: u64,
    pub transform: u64,
    pub score: u64,
    pub load: u64,
    pub alert: u64,
    pub total: u64,
}

/// Takes micro-batches through the stages.
pub struct Processor {
    args: LiveArgs,
    /// Where the scratch run directories go (`<runs-root>/live/`).
    scratch: PathBuf,
    metrics: Arc<Metrics>,
    next: u64,
    /// The latest SMTP acceptance whose latency was measured.
    measured_until: DateTime<Utc>,
}

impl Processor {
    pub fn new(args: &LiveArgs, metrics: Arc<Metrics>) -> Result<Self> {
        let scratch = scratch_dir(&args.runs_root);
        // What a process that died left there: the journal holds its payments.
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch)
            .with_context(|| format!("cannot create {}", scratch.display()))?;
        Ok(Processor {
            args: args.clone(),
            scratch,
            metrics,
            next: 0,
            measured_until: Utc::now(),
        })
    }

    /// Counts a failed attempt at a micro-batch.
    pub fn failed(&self) {
        Metrics::add(&self.metrics.batch_failures, 1);
    }

    /// Processes `batch`: its payments loaded and its frauds alerted when it returns.
    pub fn process(&mut self, batch: &Batch) -> Result<BatchSummary> {
        self.next += 1;
        let dir = self.scratch.join(format!("batch-{}", self.next));
        let run = RunArgs {
            run_dir: dir.clone(),
            run_id: Some(batch.run_id.clone()),
            lock_timeout_secs: 60,
        };
        let outcome = self.stages(&run, batch);
        let _ = std::fs::remove_dir_all(&dir);
        outcome
    }

    fn stages(&mut self, run: &RunArgs, batch: &Batch) -> Result<BatchSummary> {
        let started = Instant::now();
        let mut ms = StepTimes::default();
        let step = |took: &mut u64, since: &mut Instant| {
            *took = since.elapsed().as_millis() as u64;
            *since = Instant::now();
        };
        let mut at = Instant::now();
        write_raw(run, batch)?;
        step(&mut ms.write, &mut at);
        let a = &self.args;
        transform::run(&transform::TransformArgs {
            run: run.clone(),
            feature_spec: a.feature_spec.clone(),
            challenger: a.score.challenger.clone(),
            db: a.db.clone(),
        })
        .context("transform")?;
        step(&mut ms.transform, &mut at);
        let scored = score::run(&score::ScoreArgs {
            run: run.clone(),
            options: a.score.clone(),
            db: a.db.clone(),
        })
        .context("score")?;
        step(&mut ms.score, &mut at);
        let loaded = load::run(&load::LoadArgs {
            run: run.clone(),
            db: a.db.clone(),
            connections: 1,
            audit: false,
        })
        .context("load")?;
        step(&mut ms.load, &mut at);
        let alerted = alert::run(&alert::AlertArgs {
            run: run.clone(),
            db: a.db.clone(),
            options: a.alert.clone(),
            retry_failed: None,
            dry_run: false,
            reviews: false, // the DAG's alert sends them, at most one email a minute
        })
        .context("alert")?
        .summary;
        step(&mut ms.alert, &mut at);
        ms.total = started.elapsed().as_millis() as u64;
        let summary = BatchSummary {
            event: "micro_batch",
            run_id: batch.run_id.clone(),
            records: batch.records,
            frauds: scored.predicted_frauds,
            inserted: loaded.inserted,
            emails: alerted.emails,
            alerts_sent: alerted.sent,
            ms,
            capture_to_email_ms_max: self.measure(batch)?,
        };
        let m = &self.metrics;
        m.backlog
            .fetch_sub(batch.records, std::sync::atomic::Ordering::Relaxed);
        Metrics::add(&m.batches, 1);
        Metrics::add(&m.frauds, summary.frauds);
        Metrics::add(&m.emails, summary.emails as u64);
        Metrics::add(&m.alerts_sent, summary.alerts_sent as u64);
        m.batch_seconds.observe(started.elapsed().as_secs_f64());
        Ok(summary)
    }

    /// Records the micro-batch in `pipeline_runs` (its minute's `live` row, whose records add
    /// up) and measures the latency of the alerts accepted since the last micro-batch, from each
    /// payment's capture and from its own time; the longest from capture, in ms.
    fn measure(&mut self, batch: &Batch) -> Result<Option<i64>> {
        let mut client = self.args.db.connect()?;
        let row = audit::StageRow {
            run_id: &batch.run_id,
            stage: "live",
            records: batch.records as i64,
            rejected: 0,
            file_created_at: None,
            details: serde_json::json!({ "captured_by": "live" }),
        };
        audit::record(&mut client, std::slice::from_ref(&row), audit::Again::Add)?;
        let rows = client
            .query(
                "SELECT a.accepted_at,
                        extract(epoch FROM a.accepted_at - p.captured_at)::float8,
                        extract(epoch FROM a.accepted_at - p.trans_time)::float8
                 FROM fraud_alerts a JOIN payments_scored p USING (trans_num)
                 WHERE a.status = 'sent' AND a.accepted_at > $1",
                &[&self.measured_until],
            )
            .context("reading the latency of the alerts just sent")?;
        let mut longest: Option<f64> = None;
        for r in &rows {
            let (accepted, from_capture, from_payment): (DateTime<Utc>, f64, f64) =
                (r.get(0), r.get(1), r.get(2));
            self.measured_until = self.measured_until.max(accepted);
            self.metrics.capture_to_email.observe(from_capture);
            self.metrics.payment_to_email.observe(from_payment);
            longest = Some(longest.map_or(from_capture, |l| l.max(from_capture)));
        }
        Ok(longest.map(|s| (s * 1000.0).round() as i64))
    }
}

/// The live path's scratch folder under the runs root.
pub fn scratch_dir(runs_root: &Path) -> PathBuf {
    runs_root.join("live")
}

/// The micro-batch's payments as the `raw.jsonl` of its scratch run directory.
fn write_raw(run: &RunArgs, batch: &Batch) -> Result<()> {
    let dir = RunDir::create(run, "live")?;
    let meta = serde_json::json!({ "source": "live", "captured_by": "live" });
    let mut raw = StageWriter::create(
        &dir.raw(),
        Header::new(RAW_SCHEMA, &dir.run_id, "live", meta),
    )?;
    raw.write_lines(&batch.lines, batch.records)?;
    raw.finish(Default::default())?;
    Ok(())
}
