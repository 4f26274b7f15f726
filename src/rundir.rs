//! One work directory per pipeline run, shared by the stages (a shared volume between Airflow
//! workers). Stages keep no other local state, so they can run on any worker.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::Args;

use crate::error::Failure;

/// Where a stage reads and writes its files.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Work directory of the run: stage files are read from and written to it (`extract`
    /// creates it, mode 0700; the other stages need it to exist).
    #[arg(long, env = "FRAUDCTL_RUN_DIR", value_name = "DIR")]
    pub run_dir: PathBuf,

    /// Identifier of the run, recorded in every stage file and database row (1 to 200
    /// characters, no control character) [default: the run directory's name].
    #[arg(long, env = "FRAUDCTL_RUN_ID", value_name = "ID", value_parser = parse_run_id)]
    pub run_id: Option<String>,

    /// How long a stage waits, in seconds, for the run directory while another process works
    /// in it (a manual run, `airflow dags test` or a retry of the same interval): one process
    /// a run directory at a time. Then it exits 3, naming the holder (0 to 3600).
    #[arg(long, env = "FRAUDCTL_LOCK_TIMEOUT_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub lock_timeout_secs: u64,
}

fn parse_run_id(id: &str) -> Result<String, String> {
    if id.is_empty() || id.chars().count() > 200 || id.chars().any(char::is_control) {
        return Err("a run id is 1 to 200 characters, none of them a control character".into());
    }
    Ok(id.to_string())
}

/// A run directory, held by this process for as long as the value lives ([`DirLock`]).
#[derive(Debug, Clone)]
pub struct RunDir {
    pub path: PathBuf,
    pub run_id: String,
    _lock: Arc<DirLock>,
}

impl RunDir {
    /// The run directory of `stage`, created if missing (`extract`, the run's first stage).
    pub fn create(args: &RunArgs, stage: &str) -> Result<Self> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&args.run_dir)
            .with_context(|| format!("cannot create run directory {}", args.run_dir.display()))?;
        Self::open(args, stage)
    }

    /// The existing run directory of `stage` (a later stage's: nothing is created when the
    /// directory is missing, a mistyped path included).
    pub fn open(args: &RunArgs, stage: &str) -> Result<Self> {
        if !args.run_dir.is_dir() {
            return Err(Failure::BadInput(format!(
                "run directory {} does not exist: run `fraudctl extract` for it first (or check the path)",
                args.run_dir.display()
            ))
            .into());
        }
        let lock = DirLock::acquire(&args.run_dir, stage, args.lock_timeout_secs)?;
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
            _lock: lock,
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
        self.file(FEATURES)
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

/// The features file's name (`transform` writes it; `explain` reads it without taking the run
/// directory).
pub const FEATURES: &str = "features.jsonl";

/// An exclusive lock on a run directory (`flock` on its `.lock` file), held by one process from
/// a stage's start to its end: two processes in one run directory would write the same files
/// (a manual run meeting the scheduled one). Another process waits for it a bounded time, then
/// fails as unavailable (exit 3) naming the holder, which the lock file records. Within a
/// process the lock is shared: `fraudctl run` holds it across its stages, which take it again.
/// Released when the last [`RunDir`] holding it is dropped (or the process ends, killed
/// included: the kernel releases a `flock`).
#[derive(Debug)]
pub struct DirLock {
    file: File,
    key: PathBuf,
}

/// The locks this process holds, by canonical run directory.
static HELD: Mutex<Option<HashMap<PathBuf, Weak<DirLock>>>> = Mutex::new(None);

impl DirLock {
    const FILE: &'static str = ".lock";

    fn acquire(dir: &Path, stage: &str, timeout_secs: u64) -> Result<Arc<DirLock>> {
        let key = dir
            .canonicalize()
            .with_context(|| format!("cannot open run directory {}", dir.display()))?;
        let mut held = HELD.lock().expect("the lock registry is never poisoned");
        if let Some(lock) = held
            .get_or_insert_with(HashMap::new)
            .get(&key)
            .and_then(Weak::upgrade)
        {
            return Ok(lock);
        }
        let path = key.join(Self::FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let started = Instant::now();
        let mut said = false;
        while let Err(e) = file.try_lock() {
            if let fs::TryLockError::Error(e) = e {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
            let holder = holder(&mut file);
            if started.elapsed() >= Duration::from_secs(timeout_secs) {
                return Err(Failure::Unavailable {
                    service: "run directory",
                    target: dir.display().to_string(),
                    detail: format!(
                        "another process works in it ({holder}), still after {timeout_secs} s: it runs this interval already (a manual run, `airflow dags test`, a retry); wait for it to end, or stop it"
                    ),
                }
                .into());
            }
            if !said {
                tracing::info!(run_dir = %dir.display(), %holder, "waiting for another process to leave the run directory");
                said = true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let me = format!(
            "pid {} ({stage}) since {}",
            std::process::id(),
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(me.as_bytes()))
            .with_context(|| format!("cannot write {}", path.display()))?;
        remove_temporary_files(&key);
        let lock = Arc::new(DirLock {
            file,
            key: key.clone(),
        });
        held.get_or_insert_with(HashMap::new)
            .insert(key, Arc::downgrade(&lock));
        Ok(lock)
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        if let Ok(mut held) = HELD.lock() {
            if let Some(map) = held.as_mut() {
                map.remove(&self.key);
            }
        }
        let _ = self.file.unlock();
    }
}

/// Who holds a lock file, as its holder wrote it.
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let read = file.rewind().and_then(|()| file.read_to_string(&mut text));
    match read {
        Ok(_) if !text.trim().is_empty() => crate::pan::cut(text.trim(), 200),
        _ => "a process that has not said who it is yet".into(),
    }
}

/// Removes what writers killed before their end left (their temporary files): none of them
/// still writes, since the lock is held.
fn remove_temporary_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().ends_with(".tmp") {
            let _ = fs::remove_file(entry.path());
        }
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
