//! The live path (`fraudctl live`) against real services: the payments simulator stamping each
//! payment when it serves it, PostgreSQL, the SMTP sink. What it promises: a fraud emailed
//! within seconds, every served payment in `payments_scored` once, every predicted fraud in one
//! email, and the every-minute DAG's run of a minute it captured changing nothing.

mod util;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use util::*;

/// A running `fraudctl live`: its JSON lines (stdout) and log (stderr), read as they come.
struct Live {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

/// Reads a pipe's lines into a shared list, on a thread.
fn collect(pipe: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let into = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            into.lock().unwrap().push(line);
        }
    });
    lines
}

impl Live {
    fn start(db: &TestDb, api: &str, sink: &SmtpSink, runs: &Path, extra: &[&str]) -> Live {
        let mut child = db
            .cmd("live")
            .arg("--runs-root")
            .arg(runs)
            .args(["--api-url", api, "--smtp-url", &sink.url(), "--metrics-listen", "off"])
            .args(["--poll-interval-ms", "20", "--smtp-retries", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start fraudctl live");
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        Live {
            child,
            stdout,
            stderr,
        }
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Waits until `ready` holds (at most `secs`), naming what it waited for if it never does.
    fn wait(&self, secs: u64, what: &str, ready: impl Fn(&Live) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !ready(self) {
            assert!(Instant::now() < deadline, "{what} within {secs} s; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, then its exit: 0, and its last line (the summary).
    fn stop(mut self) -> Value {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(100)); // the readers' last lines
        assert!(status.success(), "live exited {status}; log:\n{}", self.log());
        let last = self.stdout.lock().unwrap().last().cloned().unwrap_or_default();
        serde_json::from_str(&last).unwrap_or_else(|_| panic!("no summary: {last:?}"))
    }
}

/// The run directories of the minutes the live path closed (holding their raw.jsonl).
fn closed_minutes(runs: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(runs.join("fraud_pipeline"))
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    dirs.retain(|d| d.join("raw.jsonl").exists());
    dirs.sort();
    dirs
}

/// The every-minute DAG's run of the minute in `dir`, as its tasks run (the live path's lease
/// read by extract): each stage's summary.
fn dag_run(db: &TestDb, dir: &Path) -> HashMap<&'static str, Value> {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let end = chrono::NaiveDateTime::parse_from_str(&name, "%Y%m%dT%H%M%S")
        .unwrap()
        .and_utc()
        .to_rfc3339();
    let stage = |stage: &str| {
        let mut cmd = db.cmd(stage);
        cmd.arg("--run-dir").arg(dir).args(["--run-id", "scheduled__test"]);
        cmd
    };
    let mut out = HashMap::new();
    out.insert(
        "extract",
        ok(stage("extract").args(["--interval-end", &end, "--live-wait-secs", "5"])),
    );
    out.insert(
        "transform",
        ok(stage("transform").arg("--feature-spec").arg(default_model().join("feature_spec.json"))),
    );
    out.insert("score", ok(stage("score").arg("--model-dir").arg(default_model())));
    out.insert("load", ok(&mut stage("load")));
    out.insert("alert", ok(stage("alert").args(["--smtp-url", "smtp://127.0.0.1:9"])));
    out
}

#[test]
fn the_live_path_emails_within_seconds_and_the_dag_run_of_its_minute_changes_nothing() {
    let db = TestDb::new();
    let sink = SmtpSink::start(0);
    let sim = Simulator::start(&["--time-mode", "now", "--fraud-rate", "0.05", "--seed", "11"]);
    let runs = tempfile::tempdir().unwrap();
    let live = Live::start(&db, &sim.url(), &sink, runs.path(), &[]);
    // One minute closed, and a fraud alerted: at most two minutes.
    live.wait(130, "a minute closed and a fraud emailed", |_| {
        !closed_minutes(runs.path()).is_empty() && !sink.messages().is_empty()
    });
    let summary = live.stop();
    let served = sim.stats()["served"].as_i64().unwrap();

    // Every payment the API served is loaded once, and every predicted fraud alerted in one
    // email, a few seconds after its capture at most.
    assert_eq!(summary["captured"].as_i64(), Some(served), "{summary}");
    assert_eq!(db.count("SELECT count(*) FROM payments_scored"), served);
    let frauds = db.count("SELECT count(*) FROM payments_scored WHERE predicted_fraud");
    assert!(frauds > 0, "the stream had frauds");
    let sent = db.count("SELECT count(*) FROM fraud_alerts WHERE status = 'sent'");
    assert_eq!(sent, frauds, "every predicted fraud alerted");
    let emails = sink.messages();
    let ids: HashSet<&str> = emails.iter().map(|m| header(m, "Message-ID")).collect();
    assert_eq!(ids.len(), emails.len(), "no email sent twice");
    let slowest: f64 = db
        .client()
        .query_one(
            "SELECT extract(epoch FROM max(a.accepted_at - p.captured_at))::float8
             FROM fraud_alerts a JOIN payments_scored p USING (trans_num)",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(slowest < 10.0, "an alert {slowest} s after its payment's capture");

    // The DAG's run of a closed minute reuses the live path's file and changes nothing.
    let minute = &closed_minutes(runs.path())[0];
    let rows_before = db.dump();
    let dag = dag_run(&db, minute);
    assert_eq!(dag["extract"]["reused"], true, "{}", dag["extract"]);
    let load = &dag["load"];
    assert!(load["records"].as_i64() > Some(0), "{load}");
    assert_eq!(
        (load["inserted"].as_i64(), load["updated"].as_i64()),
        (Some(0), Some(0)),
        "every row unchanged: {load}"
    );
    assert_eq!(dag["alert"]["sent"], 0, "{}", dag["alert"]);
    assert_eq!(sink.messages().len(), emails.len(), "no email from the DAG's run");
    let rows_after = db.dump();
    let payments = |dump: &str| -> Vec<String> {
        dump.lines().filter(|l| l.contains("live__")).map(String::from).collect()
    };
    assert_eq!(payments(&rows_before), payments(&rows_after));
}
