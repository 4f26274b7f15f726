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
            .args([
                "--api-url",
                api,
                "--smtp-url",
                &sink.url(),
                "--metrics-listen",
                "off",
            ])
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
            assert!(
                Instant::now() < deadline,
                "{what} within {secs} s; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, then its exit: 0, and its last line (the summary).
    fn stop(mut self) -> Value {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(100)); // the readers' last lines
        assert!(
            status.success(),
            "live exited {status}; log:\n{}",
            self.log()
        );
        let last = self
            .stdout
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default();
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

/// The every-minute DAG's run of the minute in `dir`, as its tasks run (extract reading the
/// live path's lease; `extract` more of its settings, alert's SMTP server `smtp`): each stage's
/// summary.
fn dag_run(db: &TestDb, dir: &Path, extract: &[&str], smtp: &str) -> HashMap<&'static str, Value> {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let end = chrono::NaiveDateTime::parse_from_str(&name, "%Y%m%dT%H%M%S")
        .unwrap()
        .and_utc()
        .to_rfc3339();
    let stage = |stage: &str| {
        let mut cmd = db.cmd(stage);
        cmd.arg("--run-dir")
            .arg(dir)
            .args(["--run-id", "scheduled__test"]);
        cmd
    };
    let mut out = HashMap::new();
    out.insert(
        "extract",
        ok(stage("extract")
            .args(["--interval-end", &end, "--live-wait-secs", "5"])
            .args(extract)),
    );
    out.insert(
        "transform",
        ok(stage("transform")
            .arg("--feature-spec")
            .arg(default_model().join("feature_spec.json"))),
    );
    out.insert(
        "score",
        ok(stage("score").arg("--model-dir").arg(default_model())),
    );
    out.insert("load", ok(&mut stage("load")));
    out.insert(
        "alert",
        ok(stage("alert").args(["--smtp-url", smtp, "--smtp-retries", "0"])),
    );
    out
}

/// The DAG's first run after `make up` is of the minute before the live path started: the live
/// path, capturing a later minute, will never write that one's file. `extract` says so at once
/// (skipped, exit 99) instead of waiting, failing and emailing operations; for the minute the
/// live path is in, it waits for its file.
#[test]
fn extract_skips_a_minute_the_live_path_started_after() {
    let db = TestDb::new();
    let runs = tempfile::tempdir().unwrap();
    let now = chrono::Utc::now();
    let end = |minutes_ago: i64| {
        let t = now - chrono::Duration::minutes(minutes_ago);
        t - chrono::Duration::seconds(t.timestamp() % 60)
    };
    let (before, capturing) = (end(1), end(0) + chrono::Duration::minutes(1));
    db.client()
        .execute(
            "INSERT INTO live_lease (holder, acquired_at, heartbeat_at, minute)
             VALUES ('pid 1 on test', now(), now() + interval '1 hour', $1)",
            &[&format!("live__{}", capturing.format("%Y%m%dT%H%M%S"))],
        )
        .unwrap();
    let extract = |end: chrono::DateTime<chrono::Utc>| {
        let mut cmd = db.cmd("extract");
        cmd.arg("--run-dir")
            .arg(runs.path().join(end.format("%Y%m%dT%H%M%S").to_string()))
            .args(["--interval-end", &end.to_rfc3339(), "--live-wait-secs", "1"])
            .args(["--api-url", "http://127.0.0.1:9/current-transactions"]); // never polled
        cmd
    };
    let stderr = fails(&mut extract(before), 99);
    assert!(
        stderr.contains("the live path captures the minute ending")
            && stderr.contains("captured nothing in the one ending"),
        "{stderr}"
    );
    let stderr = fails(&mut extract(capturing), 3);
    assert!(
        stderr.contains("has not written this minute's raw.jsonl"),
        "{stderr}"
    );
}

#[test]
fn the_live_path_emails_within_seconds_and_the_dag_run_of_its_minute_changes_nothing() {
    let db = TestDb::new();
    let sink = SmtpSink::start(0);
    let sim = Simulator::start(&["--fraud-rate", "0.05", "--seed", "11"]);
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
    assert!(
        slowest < 10.0,
        "an alert {slowest} s after its payment's capture"
    );

    // The DAG's run of a closed minute reuses the live path's file and changes nothing.
    let minute = &closed_minutes(runs.path())[0];
    let rows_before = db.dump();
    let dag = dag_run(&db, minute, &[], "smtp://127.0.0.1:9");
    assert_eq!(dag["extract"]["reused"], true, "{}", dag["extract"]);
    let load = &dag["load"];
    assert!(load["records"].as_i64() > Some(0), "{load}");
    assert_eq!(
        (load["inserted"].as_i64(), load["updated"].as_i64()),
        (Some(0), Some(0)),
        "every row unchanged: {load}"
    );
    assert_eq!(dag["alert"]["sent"], 0, "{}", dag["alert"]);
    assert_eq!(
        sink.messages().len(),
        emails.len(),
        "no email from the DAG's run"
    );
    let rows_after = db.dump();
    let payments = |dump: &str| -> Vec<String> {
        dump.lines()
            .filter(|l| l.contains("live__"))
            .map(String::from)
            .collect()
    };
    assert_eq!(payments(&rows_before), payments(&rows_after));
}

/// What a live fault scenario does, against its own services.
struct Scene<'a> {
    db: TestDb,
    cluster: &'a PgCluster,
    sink: SmtpSink,
    sim: Simulator,
    runs: tempfile::TempDir,
    /// A process killed -9 (its last response may not be journaled).
    killed: bool,
    /// An email the server may have received twice, the same Message-ID: accepted, then its
    /// record not made (the at-least-once window): after a kill, or the database going down at
    /// that moment.
    resend_window: bool,
    notes: Vec<String>,
}

impl<'a> Scene<'a> {
    fn new(cluster: &'a PgCluster) -> Self {
        Scene {
            db: TestDb::on(&cluster.admin_url()),
            cluster,
            sink: SmtpSink::start(0),
            // A burst of frauds every few seconds: every outage meets some.
            sim: Simulator::start(&["--fraud-rate", "0.3"]),
            runs: tempfile::tempdir().unwrap(),
            killed: false,
            resend_window: false,
            notes: Vec::new(),
        }
    }

    fn live(&self) -> Live {
        Live::start(&self.db, &self.sim.url(), &self.sink, self.runs.path(), &[])
    }

    /// Captured payments, per its JSON lines.
    fn batches(live: &Live) -> usize {
        let lines = live.stdout.lock().unwrap();
        lines
            .iter()
            .filter(|l| l.contains("\"micro_batch\""))
            .count()
    }

    /// Every minute's DAG run, as it would follow: the minutes the live path closed reuse its
    /// file, the others (a minute left open when it stopped or died) poll the API a second,
    /// taking over its journal.
    fn settle(&self) {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(self.runs.path().join("fraud_pipeline"))
            .map(|e| e.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        dirs.sort();
        let api = self.sim.url();
        for dir in dirs {
            dag_run(
                &self.db,
                &dir,
                &["--max-seconds", "1", "--api-url", &api],
                &self.sink.url(),
            );
        }
    }

    /// The invariants, once settled: every payment served loaded once (after a kill -9, but the
    /// one response the killed process may have received and not journaled yet: the simulator
    /// serves one payment a response); every predicted fraud recorded sent, in the email its row
    /// names, which the server received once (twice at most after a kill or a database outage, the
    /// same Message-ID).
    fn check(&self) -> Result<String, String> {
        let served = self.sim.stats()["served"].as_i64().unwrap();
        let rows = self.db.count("SELECT count(*) FROM payments_scored");
        let in_flight = i64::from(self.killed);
        if rows > served || rows < served - in_flight {
            return Err(format!("{rows} rows for {served} payments served"));
        }
        let frauds = self
            .db
            .count("SELECT count(*) FROM payments_scored WHERE predicted_fraud");
        let unsent = self.db.count(
            "SELECT count(*) FROM payments_scored p LEFT JOIN fraud_alerts a USING (trans_num)
             WHERE p.predicted_fraud AND a.status IS DISTINCT FROM 'sent'",
        );
        if unsent > 0 {
            return Err(format!(
                "{unsent} of {frauds} predicted frauds not recorded sent"
            ));
        }
        let mut received: HashMap<String, usize> = HashMap::new();
        for m in self.sink.messages() {
            *received
                .entry(header(&m, "Message-ID").to_string())
                .or_default() += 1;
        }
        let allowed = if self.resend_window { 2 } else { 1 };
        let ids: Vec<String> = self
            .db
            .client()
            .query(
                "SELECT DISTINCT message_id FROM fraud_alerts WHERE status = 'sent'",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        for id in &ids {
            let n = received.get(id).copied().unwrap_or(0);
            if n == 0 || n > allowed {
                return Err(format!("email {id} received {n} times"));
            }
        }
        if received.len() != ids.len() {
            return Err(format!(
                "{} emails received, {} recorded",
                received.len(),
                ids.len()
            ));
        }
        Ok(format!(
            "{served} payments, {frauds} frauds, {} emails; {}",
            ids.len(),
            self.notes.join("; ")
        ))
    }
}

/// Whether a micro-batch's scratch run directory is there (it is while its stages run).
fn batch_under_way(runs: &Path) -> bool {
    std::fs::read_dir(runs.join("live")).is_ok_and(|mut e| e.next().is_some())
}

/// kill -9 while a micro-batch is processed (its scratch directory still there after the kill:
/// the kill landed mid-batch), then started again: it processes the journal again.
fn killed_mid_batch(s: &mut Scene) {
    for attempt in 1..=20 {
        let mut live = s.live();
        live.wait(60, "a micro-batch under way", |_| {
            batch_under_way(s.runs.path())
        });
        live.child.kill().unwrap();
        live.child.wait().unwrap();
        if batch_under_way(s.runs.path()) {
            s.killed = true;
            s.resend_window = true;
            s.notes.push(format!("killed -9 mid-batch (try {attempt})"));
            break;
        }
    }
    assert!(s.killed, "no kill landed mid-batch in 20 tries");
    let again = s.live();
    again.wait(60, "micro-batches after the restart", |l| {
        Scene::batches(l) >= 3
    });
    again.stop();
}

/// PostgreSQL stopped for 5 s while the live path runs: it captures on into its journal, its
/// micro-batches wait, and all of them go through once the database is back.
fn postgres_down(s: &mut Scene) {
    let live = s.live();
    live.wait(60, "micro-batches", |l| Scene::batches(l) >= 2);
    s.cluster.stop("fast");
    // Down between an email's acceptance and its record, the email is sent again, the same
    // Message-ID (as after a kill): what alert's ledger promises, at least once, never lost.
    s.resend_window = true;
    std::thread::sleep(Duration::from_secs(5));
    s.cluster.resume();
    let before = Scene::batches(&live);
    live.wait(90, "micro-batches after the outage", |l| {
        Scene::batches(l) >= before + 3
    });
    assert!(
        live.log().contains("trying again"),
        "its micro-batches waited: {}",
        live.log()
    );
    live.stop();
    s.notes.push("PostgreSQL down 5 s".into());
}

/// The SMTP server down for 4 s: the frauds of that time are emailed once it is back.
fn smtp_down(s: &mut Scene) {
    let live = s.live();
    live.wait(60, "an email", |_| !s.sink.messages().is_empty());
    s.sink.stop();
    let down =
        s.db.count("SELECT count(*) FROM payments_scored WHERE predicted_fraud");
    std::thread::sleep(Duration::from_secs(4));
    let unsent = s.db.count(
        "SELECT count(*) FROM payments_scored p LEFT JOIN fraud_alerts a USING (trans_num)
         WHERE p.predicted_fraud AND a.status IS DISTINCT FROM 'sent'",
    );
    s.sink.resume(0);
    let before = Scene::batches(&live);
    live.wait(60, "micro-batches after the outage", |l| {
        Scene::batches(l) >= before + 3
    });
    live.stop();
    assert!(
        unsent > 0,
        "no fraud waited for the SMTP server ({down} frauds before it went down)"
    );
    s.notes.push(format!(
        "SMTP server down 4 s, {unsent} frauds waiting for it"
    ));
}

/// Two live processes at once: the second waits for the lease and captures nothing until the
/// first stops, then takes over.
fn two_at_once(s: &mut Scene) {
    let first = s.live();
    first.wait(60, "the first captures", |l| Scene::batches(l) >= 1);
    let second = s.live();
    second.wait(30, "the second waits for the lease", |l| {
        l.log().contains("holds the lease")
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        Scene::batches(&second),
        0,
        "the second captured while the first held the lease"
    );
    first.stop();
    second.wait(30, "the second takes over", |l| Scene::batches(l) >= 1);
    second.stop();
    s.notes
        .push("the second process waited, then took over".into());
}

/// Stopped: the DAG's run of the minute it stopped in (due once that minute ends) polls the API
/// itself, nobody holding the lease, taking over the minute's journal; started again, in the
/// next minute, the live path captures on.
fn stopped_then_started(s: &mut Scene) {
    let live = s.live();
    live.wait(60, "micro-batches", |l| Scene::batches(l) >= 2);
    live.stop();
    let end = fraudctl::live::Minute::end_of(chrono::Utc::now());
    let minute = fraudctl::live::Minute::path(s.runs.path(), end);
    while chrono::Utc::now() < end {
        std::thread::sleep(Duration::from_millis(200));
    }
    let api = s.sim.url();
    let dag = dag_run(
        &s.db,
        &minute,
        &["--max-seconds", "2", "--api-url", &api],
        &s.sink.url(),
    );
    let extract = &dag["extract"];
    assert_eq!(extract["reused"], false, "{extract}");
    let again = s.live();
    again.wait(60, "micro-batches after the restart", |l| {
        Scene::batches(l) >= 2
    });
    again.stop();
    s.notes.push(format!(
        "the DAG's run of its minute captured {} payments",
        extract["records"]
    ));
}

/// A live fault scenario: its name, and what it does to the scene.
type Scenario = (&'static str, fn(&mut Scene));

#[test]
fn live_fault_scenarios_lose_and_duplicate_nothing() {
    let scenarios: [Scenario; 5] = [
        (
            "fraudctl live killed -9 mid-batch, started again",
            killed_mid_batch,
        ),
        ("PostgreSQL down during the live path", postgres_down),
        ("SMTP server down during the live path", smtp_down),
        ("two fraudctl live at once", two_at_once),
        (
            "fraudctl live stopped, the DAG covers its minute, started again",
            stopped_then_started,
        ),
    ];
    let cluster = PgCluster::start();
    let mut failed = Vec::new();
    for (name, scenario) in scenarios {
        let started = Instant::now();
        let mut scene = Scene::new(&cluster);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            scenario(&mut scene);
            scene.settle();
        }))
        .map_err(|panic| {
            panic.downcast_ref::<String>().cloned().unwrap_or_else(|| {
                panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            })
        })
        .and_then(|()| scene.check());
        let took = started.elapsed().as_secs_f32();
        match outcome {
            Ok(summary) => eprintln!("  ok    {name} [{took:.1} s]: {summary}"),
            Err(why) => {
                eprintln!("  FAIL  {name} [{took:.1} s]: {why}");
                failed.push(name);
            }
        }
    }
    eprintln!(
        "live fault scenarios: {} run, {} passed, {} failed",
        scenarios.len(),
        scenarios.len() - failed.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "failed live scenarios: {failed:?}");
}
