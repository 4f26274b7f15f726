//! One work directory per pipeline run, shared by the stages (a shared volume between Airflow
//! workers). Stages keep no other local state, so they can run on any worker.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::Args;

/// Where a stage reads and writes its files.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Work directory of the run: stage files are read from and written to it (created, mode 0700).
    #[arg(long, env = "FRAUDCTL_RUN_DIR", value_name = "DIR")]
    pub run_dir: PathBuf,

    /// Identifier of the run, recorded in every stage file and database row [default: the run
    /// directory's name].
    #[arg(long, env = "FRAUDCTL_RUN_ID", value_name = "ID")]
    pub run_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RunDir {
    pub path: PathBuf,
    pub run_id: String,
}

impl RunDir {
    pub fn open(args: &RunArgs) -> Result<Self> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&args.run_dir)
            .with_context(|| format!("cannot create run directory {}", args.run_dir.display()))?;
        let run_id = match &args.run_id {
            Some(id) => id.clone(),
            None => args
                .run_dir
                .canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "run".to_string()),
        };
        Ok(RunDir {
            path: args.run_dir.clone(),
            run_id,
        })
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn raw(&self) -> PathBuf {
        self.file("raw.jsonl")
    }
    pub fn raw_rejected(&self) -> PathBuf {
        self.file("raw.rejected.jsonl")
    }
    pub fn features(&self) -> PathBuf {
        self.file("features.jsonl")
    }
    pub fn features_rejected(&self) -> PathBuf {
        self.file("features.rejected.jsonl")
    }
    pub fn scored(&self) -> PathBuf {
        self.file("scored.jsonl")
    }

    /// When the run's payments were captured: the time `extract` started writing `raw.jsonl`
    /// (its header's `created_at`). What orders batches for the cards' history: a batch's
    /// features read only what was captured before it.
    pub fn captured_at(&self) -> Result<DateTime<Utc>> {
        let raw = self.raw();
        require_input(&raw, "extract")?;
        let header = crate::stagefile::read_header(&raw)?.expect("checked to exist");
        header.created_at().ok_or_else(|| {
            crate::error::Failure::BadInput(format!(
                "{} has no valid created_at in its header: re-run `fraudctl extract --refetch`",
                raw.display()
            ))
            .into()
        })
    }
}

/// Logs that a stage has opened its input and starts its work, with how many records it has to
/// do (the first line of a task's log an operator reads; the fault tests wait for it before
/// killing a stage mid-run).
pub fn log_started(stage: &str, records: u64) {
    tracing::info!(stage, records, "started");
}

/// Fails with a message that names the stage to run first when an input file is missing.
pub fn require_input(path: &Path, produced_by: &str) -> Result<()> {
    if !path.exists() {
        anyhow::bail!(crate::error::Failure::BadInput(format!(
            "{} does not exist: run `fraudctl {produced_by}` for this run directory first",
            path.display()
        )));
    }
    Ok(())
}
