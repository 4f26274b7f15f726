//! Shared helpers for the integration tests, by concern: running `fraudctl` and reading what it
//! left (this file), databases and PostgreSQL clusters (`db.rs`), the services the stages talk
//! to (`services.rs`: the payments simulator, fixture servers, the SMTP sink, the SageMaker
//! endpoint), and the data the tests feed them (`data.rs`).
//!
//! PostgreSQL: the admin URL comes from FRAUDCTL_TEST_ADMIN_URL (default: the private cluster
//! of `scripts/pg.sh start`). Each test gets its own database, dropped afterwards.
//!
//! A command that does not end as a test expects shows what it ran (its command line and the
//! FRAUDCTL_* variables it was given, secrets hidden), its exit status, stdout and stderr, and
//! the files of its run directory: enough to see why without running it again.

#![allow(dead_code)] // each test file uses a different subset of the helpers

mod data;
mod db;
mod services;

// Each test file uses a different subset: some use nothing of a module.
#[allow(unused_imports)]
pub use data::*;
#[allow(unused_imports)]
pub use db::*;
#[allow(unused_imports)]
pub use services::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const PAN_KEY: &str = "integration-test-key-0123456789abcdef";

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared` beside the repository (override with FRAUDCTL_SHARED_DIR).
pub fn shared() -> PathBuf {
    std::env::var_os("FRAUDCTL_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared"))
}

pub fn sample_csv() -> PathBuf {
    shared().join("data/fraud_sample.csv")
}

pub fn default_model() -> PathBuf {
    root().join("model/default")
}

/// `fraudctl` with the test's card-hash key and no inherited FRAUDCTL_* settings.
pub fn fraudctl() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fraudctl"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("FRAUDCTL_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("FRAUDCTL_PAN_HASH_KEY", PAN_KEY)
        .env("FRAUDCTL_LOG", "info")
        .current_dir(root());
    cmd
}

/// Runs a command and returns its output, whatever the exit code.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a command that must succeed; returns its stdout's last line parsed as JSON.
pub fn ok(cmd: &mut Command) -> serde_json::Value {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{}",
        explain(cmd, &out, "did not succeed")
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("{}", explain(cmd, &out, "printed nothing on stdout")));
    serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "{}",
            explain(cmd, &out, &format!("printed {last:?}, not JSON: {e}"))
        )
    })
}

/// Runs a command that must fail with `code`; returns its stderr.
pub fn fails(cmd: &mut Command, code: i32) -> String {
    let out = run(cmd);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        explain(cmd, &out, &format!("was expected to exit {code}"))
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// What a test prints when a command did not do what it expected: the command line, the
/// FRAUDCTL_* variables it was given (values of secrets hidden), its exit status, stdout, stderr
/// and the listing of its run directory.
pub fn explain(cmd: &Command, out: &Output, what: &str) -> String {
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let env: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_string_lossy().into_owned(), v?)))
        .filter(|(k, _)| k.starts_with("FRAUDCTL_"))
        .map(|(k, v)| {
            let secret = k.contains("KEY") || k.contains("PASSWORD") || k.contains("URL");
            let v = if secret {
                "…".into()
            } else {
                v.to_string_lossy().into_owned()
            };
            format!("{k}={v}")
        })
        .collect();
    let run_dir = args
        .iter()
        .position(|a| a == "--run-dir")
        .and_then(|i| args.get(i + 1))
        .map(|d| listing(Path::new(d)))
        .unwrap_or_default();
    format!(
        "`{} {}` {what}: {}\n  environment: {}\n--- stdout\n{}--- stderr\n{}{run_dir}",
        cmd.get_program().to_string_lossy(),
        args.join(" "),
        out.status,
        env.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    )
}

/// The files of a run directory, with their sizes.
fn listing(dir: &Path) -> String {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| {
                    let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                    format!("  {} ({size} bytes)", e.file_name().to_string_lossy())
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    format!(
        "--- run directory {}\n{}\n",
        dir.display(),
        files.join("\n")
    )
}

/// A temporary run directory.
pub struct RunDir {
    dir: tempfile::TempDir,
}

impl RunDir {
    pub fn new() -> Self {
        RunDir {
            dir: tempfile::Builder::new()
                .prefix("fraudctl-run-")
                .tempdir()
                .expect("temp dir"),
        }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    /// `fraudctl STAGE --run-dir DIR --run-id test-run`. `transform` reads the cards' history
    /// from [`no_history_db`] unless the test sets FRAUDCTL_DATABASE_URL to a database of its own.
    pub fn stage(&self, stage: &str) -> Command {
        let mut cmd = fraudctl();
        cmd.arg(stage)
            .arg("--run-dir")
            .arg(self.path())
            .arg("--run-id")
            .arg("test-run");
        if stage == "transform" {
            cmd.env("FRAUDCTL_DATABASE_URL", no_history_db());
        }
        cmd
    }
    /// The records of a stage file (header dropped), parsed.
    pub fn records(&self, name: &str) -> Vec<serde_json::Value> {
        read_records(&self.file(name))
    }
    /// The header of a stage file.
    pub fn header(&self, name: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(self.file(name)).expect("stage file");
        serde_json::from_str(text.lines().next().expect("header")).expect("header JSON")
    }
}

pub fn read_records(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .skip(1)
        .map(|l| serde_json::from_str(l).expect("record JSON"))
        .collect()
}
