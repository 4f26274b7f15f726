//! The core pipeline against a real PostgreSQL and a real `serve-payments` process, one file a
//! concern: the sample replayed (`replay.rs`), outages and crashes (`outages.rs`), bad input
//! (`bad_input.rs`), `migrate` (`migrate.rs`), the card history and reasons
//! (`card_history.rs`), logs and progress (`logs.rs`). One test binary, with the helpers they
//! share here.

#[path = "../util/mod.rs"]
mod util;

mod bad_input;
mod card_history;
mod logs;
mod migrate;
mod outages;
mod replay;

use serde_json::Value;
use util::*;

/// extract + transform + score (local model) in `dir`; returns the extract summary.
fn extract_to_scored(dir: &RunDir, extract: &mut std::process::Command) -> Value {
    let summary = ok(extract);
    ok(dir
        .stage("transform")
        .arg("--feature-spec")
        .arg(default_model().join("feature_spec.json")));
    ok(dir.stage("score").arg("--model-dir").arg(default_model()));
    summary
}

/// A run directory with the whole sample extracted (from the CSV), transformed and scored.
fn scored_sample() -> RunDir {
    let dir = RunDir::new();
    extract_to_scored(
        &dir,
        dir.stage("extract").arg("--from-csv").arg(sample_csv()),
    );
    dir
}

/// `load` of `dir` into `db` as run `run_id`, by `connections` sessions.
fn load_by(db: &TestDb, dir: &RunDir, run_id: &str, connections: &str) -> Value {
    ok(db.cmd("load").arg("--run-dir").arg(dir.path()).args([
        "--run-id",
        run_id,
        "--connections",
        connections,
    ]))
}
