//! A minute the live path captures: the every-minute DAG's run directory of the interval it
//! falls in (`<runs-root>/fraud_pipeline/<interval end, as ts_nodash>`), held (its lock) while
//! the minute is captured, its journal, and the collector that validates and de-duplicates into
//! it. Closed, the minute is that run directory's `raw.jsonl`, which the DAG's run reuses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use super::journal::{self, Journal};
use crate::extract::{Collector, Sink};
use crate::pan::PanProtector;
use crate::rundir::{RunArgs, RunDir};

/// Where the DAG's run directories are, under the runs root.
const DAG_FOLDER: &str = "fraud_pipeline";

/// A minute's name: its end as Airflow's `ts_nodash` writes it (`20261206T101500`).
const NAME: &str = "%Y%m%dT%H%M%S";
/// The live path's run ids: this, then the minute's name.
const RUN_ID_PREFIX: &str = "live__";

pub struct Minute {
    /// The interval's end (the DAG's `data_interval_end`).
    pub end: DateTime<Utc>,
    dir: RunDir,
    pub(crate) collector: Collector<Journal>,
    pub requests: u64,
    pub source_errors: u64,
}

impl Minute {
    /// The end of the minute `at` falls in.
    pub fn end_of(at: DateTime<Utc>) -> DateTime<Utc> {
        at.duration_trunc(TimeDelta::minutes(1))
            .expect("a minute divides any time")
            + TimeDelta::minutes(1)
    }

    /// The run directory of the minute ending at `end`.
    pub fn path(runs_root: &Path, end: DateTime<Utc>) -> PathBuf {
        runs_root
            .join(DAG_FOLDER)
            .join(end.format(NAME).to_string())
    }

    /// The run id the live path records the minute's payments under.
    fn id_of(end: DateTime<Utc>) -> String {
        format!("{RUN_ID_PREFIX}{}", end.format(NAME))
    }

    /// The end of the minute a run id of [`Self::id_of`] names.
    pub fn end_of_run_id(id: &str) -> Option<DateTime<Utc>> {
        let name = id.strip_prefix(RUN_ID_PREFIX)?;
        Some(
            chrono::NaiveDateTime::parse_from_str(name, NAME)
                .ok()?
                .and_utc(),
        )
    }

    /// The minutes whose journal a process that died left under `runs_root` (their ends).
    pub fn left_open(runs_root: &Path) -> Vec<DateTime<Utc>> {
        let Ok(entries) = std::fs::read_dir(runs_root.join(DAG_FOLDER)) else {
            return Vec::new();
        };
        let mut ends: Vec<DateTime<Utc>> = entries
            .flatten()
            .filter(|e| e.path().join(journal::RAW).exists())
            .filter_map(|e| {
                let name = e.file_name();
                chrono::NaiveDateTime::parse_from_str(&name.to_string_lossy(), NAME).ok()
            })
            .map(|t| t.and_utc())
            .collect();
        ends.sort();
        ends
    }

    /// Opens the minute ending at `end`: its directory created and held (waiting at most
    /// `lock_timeout_secs` for another process to leave it), its journal opened (what a process
    /// that died captured in it is pending again). `None` when the minute's `raw.jsonl` exists
    /// already (the DAG's run captured it, or an earlier process closed it): a journal it left
    /// is removed.
    pub fn open(
        runs_root: &Path,
        end: DateTime<Utc>,
        pan: &PanProtector,
        lock_timeout_secs: u64,
    ) -> Result<Option<Minute>> {
        let run = RunArgs {
            run_dir: Self::path(runs_root, end),
            run_id: Some(Self::id_of(end)),
            lock_timeout_secs,
        };
        let dir = RunDir::create(&run, "live")?;
        if dir.raw().exists() {
            journal::remove(&dir.path);
            return Ok(None);
        }
        let (journal, kept) = Journal::open(&dir.path)?;
        let mut collector = Collector::new(journal, pan.clone());
        collector.remember(&kept);
        if !kept.is_empty() {
            tracing::info!(minute = %dir.run_id, records = collector.records(), "a journal left open: its payments are processed again, the minute goes on");
        }
        Ok(Some(Minute {
            end,
            dir,
            collector,
            requests: 0,
            source_errors: 0,
        }))
    }

    pub fn run_id(&self) -> &str {
        &self.dir.run_id
    }

    /// Closes the minute: its journal becomes its `raw.jsonl` (which the DAG's run of this
    /// interval reuses) and `raw.rejected.jsonl`. The records it holds.
    pub fn close(self, source: &str) -> Result<u64> {
        let (journal, duplicates) = self.collector.into_parts();
        let records = journal.kept();
        let counts = BTreeMap::from([
            ("duplicates".to_string(), duplicates),
            ("requests".to_string(), self.requests),
            ("source_errors".to_string(), self.source_errors),
        ]);
        journal.close(&self.dir, source, counts)?;
        Ok(records)
    }
}
