//! Fault injection over the whole pipeline: each scenario runs extract → transform → score →
//! load → alert against real services (the payments simulator with faults, a PostgreSQL cluster
//! of this test's own that it crashes and restarts, the SMTP sink that it stops and restarts, the
//! SageMaker endpoint throttling and failing), kills stages with SIGKILL at random points and
//! re-runs them, then checks the same invariants after every scenario (see `check`).
//!
//! Random choices (kill delays, the simulator's fault sequence) come from one seeded RNG: the
//! seed is printed, and FRAUDCTL_FAULT_SEED=<seed> replays a run.

mod util;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use util::*;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Stage {
    Extract,
    Transform,
    Score,
    Load,
    Alert,
}

const STAGES: [Stage; 5] = [
    Stage::Extract,
    Stage::Transform,
    Stage::Score,
    Stage::Load,
    Stage::Alert,
];

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::Extract => "extract",
            Stage::Transform => "transform",
            Stage::Score => "score",
            Stage::Load => "load",
            Stage::Alert => "alert",
        }
    }
    /// The file the stage writes (none for load and alert).
    fn output(self) -> Option<&'static str> {
        match self {
            Stage::Extract => Some("raw.jsonl"),
            Stage::Transform => Some("features.jsonl"),
            Stage::Score => Some("scored.jsonl"),
            Stage::Load | Stage::Alert => None,
        }
    }
    /// Kill delays, counted from the stage's "started" log line, are drawn from 0..this many
    /// ms: under the stage's run time here (halved at each try that came too late).
    fn kill_window_ms(self) -> u64 {
        match self {
            Stage::Extract => 200,
            Stage::Transform | Stage::Score => 30,
            Stage::Load => 100,
            Stage::Alert => 100,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// The API answers the rows of `hostile_bodies()`: huge values, wrong types, broken JSON.
    HostileApi,
    /// The API's responses take 1.5 s for some requests; extract's timeout is 1 s.
    ApiTimeouts,
    /// PostgreSQL is stopped (pg_ctl stop -m MODE: "fast" as for a restart, "immediate" as in a
    /// crash) while load waits inside its transaction; started again.
    PostgresStopDuringLoad(&'static str),
    /// The SMTP server goes down after two alerts, comes back refusing one message, recovers.
    SmtpDownDuringAlert,
    /// The endpoint answers 429 twice, then 503 twice, then scores.
    SageMakerFlaky,
    /// The endpoint only throttles: the local fallback scores; re-scored once it is back.
    SageMakerDown,
    /// The API answers a few bodies, then refuses with this 4xx (a wrong URL, expired
    /// credentials): what was captured is kept.
    ApiRefusesMidRun(u16),
    /// The SMTP server refuses one alert for good (554): the others go out; the operator
    /// retries it once the cause is fixed.
    SmtpRefusesOne,
    /// Two `alert` processes at once (a manual run beside the scheduled one).
    ConcurrentAlerts,
    /// SIGKILL at a random point while the stage works, then re-run.
    Kill(Stage),
    /// SIGKILL of a stage drawn at random.
    KillAny,
}

struct Scenario {
    name: &'static str,
    /// serve-payments fault options.
    api: &'static [&'static str],
    faults: &'static [Fault],
    /// Transactions per API response, and how many to extract.
    rows_per_response: u32,
    records: u32,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "payments API answers 500 to 30% of requests",
        api: &["--error-rate", "0.3"],
        faults: &[],
        rows_per_response: 1,
        records: 100,
    },
    Scenario {
        name: "payments API times out",
        api: &["--slow-rate", "0.1", "--slow-ms", "1500"],
        faults: &[Fault::ApiTimeouts],
        rows_per_response: 5,
        records: 150,
    },
    Scenario {
        name: "payments API sends truncated, non-JSON, wrongly typed and incomplete bodies",
        api: &["--malformed-rate", "0.25"],
        faults: &[],
        rows_per_response: 1,
        records: 100,
    },
    Scenario {
        name: "payments API repeats trans_nums",
        api: &["--duplicate-rate", "0.25"],
        faults: &[],
        rows_per_response: 1,
        records: 100,
    },
    Scenario {
        name: "payments API sends huge values, wrong types, hostile JSON",
        api: &[],
        faults: &[Fault::HostileApi],
        rows_per_response: 1,
        records: 1000,
    },
    Scenario {
        name: "payments API answers 404 after some bodies",
        api: &[],
        faults: &[Fault::ApiRefusesMidRun(404)],
        rows_per_response: 1,
        records: 100,
    },
    Scenario {
        name: "payments API answers 401 after some bodies",
        api: &[],
        faults: &[Fault::ApiRefusesMidRun(401)],
        rows_per_response: 1,
        records: 100,
    },
    Scenario {
        name: "PostgreSQL stopped during load, then started again",
        api: &[],
        faults: &[Fault::PostgresStopDuringLoad("fast")],
        rows_per_response: 20,
        records: 400,
    },
    Scenario {
        name: "PostgreSQL crashes during load, then restarts",
        api: &[],
        faults: &[Fault::PostgresStopDuringLoad("immediate")],
        rows_per_response: 20,
        records: 400,
    },
    Scenario {
        name: "SMTP server down during alert",
        api: &[],
        faults: &[Fault::SmtpDownDuringAlert],
        rows_per_response: 20,
        records: 200,
    },
    Scenario {
        name: "SMTP server refuses one alert for good, the operator retries it",
        api: &[],
        faults: &[Fault::SmtpRefusesOne],
        rows_per_response: 20,
        records: 200,
    },
    Scenario {
        name: "two alert processes at once",
        api: &[],
        faults: &[Fault::ConcurrentAlerts],
        rows_per_response: 20,
        records: 400,
    },
    Scenario {
        name: "SageMaker throttles then fails with 503s",
        api: &[],
        faults: &[Fault::SageMakerFlaky],
        rows_per_response: 20,
        records: 200,
    },
    Scenario {
        name: "SageMaker stays unavailable, then comes back",
        api: &[],
        faults: &[Fault::SageMakerDown],
        rows_per_response: 20,
        records: 200,
    },
    Scenario {
        name: "extract killed at a random point",
        api: &[],
        faults: &[Fault::Kill(Stage::Extract)],
        rows_per_response: 5,
        records: 600,
    },
    Scenario {
        name: "transform killed at a random point",
        api: &[],
        faults: &[Fault::Kill(Stage::Transform)],
        rows_per_response: 50,
        records: 2000,
    },
    Scenario {
        name: "score killed at a random point",
        api: &[],
        faults: &[Fault::Kill(Stage::Score)],
        rows_per_response: 50,
        records: 2000,
    },
    Scenario {
        name: "load killed at a random point",
        api: &[],
        faults: &[Fault::Kill(Stage::Load)],
        rows_per_response: 50,
        records: 2000,
    },
    Scenario {
        name: "alert killed at a random point",
        api: &[],
        faults: &[Fault::Kill(Stage::Alert)],
        rows_per_response: 20,
        records: 600,
    },
    Scenario {
        name: "everything at once: API faults, SageMaker throttling, a stage killed",
        api: &[
            "--error-rate",
            "0.1",
            "--malformed-rate",
            "0.1",
            "--duplicate-rate",
            "0.1",
        ],
        faults: &[Fault::SageMakerFlaky, Fault::KillAny],
        rows_per_response: 1,
        records: 150,
    },
];

/// What every scenario shares: the PostgreSQL cluster, the data the simulator replays.
struct Shared {
    cluster: PgCluster,
    /// The sample's rows from the first fraud on (most of its frauds), as a CSV to replay.
    csv: tempfile::NamedTempFile,
    pans: HashSet<String>,
}

/// One scenario's services and run directory, and what happened in it.
struct World<'a> {
    shared: &'a Shared,
    scenario: &'a Scenario,
    db: TestDb,
    dir: RunDir,
    sink: SmtpSink,
    api: Api,
    /// Alerts the SMTP server had accepted but `fraud_alerts` had not recorded when `alert` was
    /// killed: the documented at-least-once window, where the next run sends the same message
    /// (same Message-ID) again.
    in_flight: HashSet<String>,
    notes: Vec<String>,
    rng: SmallRng,
}

enum Api {
    Simulator(Simulator),
    Scripted(FixtureServer, usize),
}

impl Api {
    fn url(&self) -> String {
        match self {
            Api::Simulator(sim) => sim.url(),
            Api::Scripted(server, _) => server.url.clone(),
        }
    }
}

const TO: &str = "analysts@example.test";

impl World<'_> {
    fn has(&self, fault: Fault) -> bool {
        self.scenario.faults.contains(&fault)
    }

    fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    fn command(&self, stage: Stage) -> Command {
        let mut cmd = self.dir.stage(stage.name());
        match stage {
            Stage::Extract => {
                if let Api::Scripted(..) = self.api {
                    cmd.args(["--retries", "0"]); // its 503 means "nothing more"
                }
                cmd.args(["--api-url", &self.api.url()]).args([
                    "--max-records",
                    &self.scenario.records.to_string(),
                    "--poll-interval-ms",
                    "0",
                    "--max-seconds",
                    "60",
                    "--request-timeout-secs",
                    "1",
                ]);
            }
            Stage::Transform => {
                cmd.arg("--feature-spec")
                    .arg(default_model().join("feature_spec.json"))
                    .env("FRAUDCTL_DATABASE_URL", &self.db.url);
            }
            Stage::Score => {
                cmd.arg("--model-dir").arg(default_model());
            }
            Stage::Load => {
                cmd.env("FRAUDCTL_DATABASE_URL", &self.db.url);
            }
            Stage::Alert => {
                cmd.env("FRAUDCTL_DATABASE_URL", &self.db.url).args([
                    "--smtp-url",
                    &self.sink.url(),
                    "--to",
                    TO,
                    "--smtp-retries",
                    "0",
                    // The payments are years old (their own times); the backfill rule, which
                    // would suppress them, is tested in tests/alerts.rs.
                    "--max-age-hours",
                    "1000000",
                ]);
            }
        }
        cmd
    }

    fn sagemaker(&self, endpoint: &SageMaker, attempts: u32) -> Command {
        let mut cmd = self.command(Stage::Score);
        cmd.args([
            "--sagemaker-endpoint",
            SAGEMAKER_ENDPOINT,
            "--sagemaker-attempts",
            &attempts.to_string(),
        ]);
        with_aws(&mut cmd, &endpoint.url);
        cmd
    }

    /// Runs the scenario's pipeline, its faults striking where they belong.
    fn run(&mut self) {
        let kill = self.scenario.faults.iter().find_map(|f| match f {
            Fault::Kill(stage) => Some(*stage),
            _ => None,
        });
        let kill = match (kill, self.has(Fault::KillAny)) {
            (None, true) => Some(STAGES[self.rng.gen_range(0..STAGES.len())]),
            (kill, _) => kill,
        };
        for stage in STAGES {
            if kill == Some(stage) {
                self.kill_at_random(stage);
            }
            match stage {
                Stage::Score if self.has(Fault::SageMakerFlaky) => self.score_flaky(),
                Stage::Score if self.has(Fault::SageMakerDown) => self.score_down(),
                Stage::Load => match self.scenario.faults.iter().find_map(|f| match f {
                    Fault::PostgresStopDuringLoad(mode) => Some(*mode),
                    _ => None,
                }) {
                    Some(mode) => self.load_cut(mode),
                    None => self.plain(stage),
                },
                Stage::Alert if self.has(Fault::SmtpDownDuringAlert) => self.alert_down(),
                Stage::Alert if self.has(Fault::SmtpRefusesOne) => self.alert_refuses_one(),
                Stage::Alert if self.has(Fault::ConcurrentAlerts) => self.alerts_at_once(),
                Stage::Extract if self.refusal().is_some() => self.extract_refused(),
                _ => self.plain(stage),
            }
        }
    }

    fn plain(&mut self, stage: Stage) {
        let summary = ok(&mut self.command(stage));
        if stage == Stage::Extract {
            self.note(format!(
                "extract: {} records, {} rejected, {} requests, {} source errors",
                summary["records"],
                summary["rejected"],
                summary["requests"],
                summary["source_errors"]
            ));
        }
    }

    /// SIGKILL after a random delay counted from the stage's "started" log line, while the
    /// stage is still working (a try that comes too late is repeated with a shorter window);
    /// whatever the stage had done must be all or nothing.
    fn kill_at_random(&mut self, stage: Stage) {
        let mut window = stage.kill_window_ms();
        let mut attempt = 1;
        let delay = loop {
            let delay = self.rng.gen_range(0..window.max(1));
            let mut cmd = self.command(stage);
            if stage == Stage::Extract && attempt > 1 {
                cmd.arg("--refetch"); // the earlier try finished: capture again
            }
            if kill_while_working(&mut cmd, Duration::from_millis(delay)) {
                break delay;
            }
            assert!(
                attempt < 6 && stage != Stage::Alert,
                "{} finished before every kill (last window {window} ms): no kill landed mid-run",
                stage.name()
            );
            attempt += 1;
            window /= 2;
        };
        self.note(format!(
            "{} killed {delay} ms into its work (try {attempt})",
            stage.name()
        ));
        if let Some(file) = stage.output() {
            let path = self.dir.file(file);
            assert!(
                !path.exists() || complete(&path).is_ok(),
                "a killed {} left a partial {file}: {:?}",
                stage.name(),
                complete(&path)
            );
        }
        match stage {
            Stage::Load => {
                let rows = self.db.count("SELECT count(*) FROM payments_scored");
                let scored = self.dir.records("scored.jsonl").len() as i64;
                assert!(
                    rows == 0 || rows == scored,
                    "a killed load left {rows} of {scored} rows: not all or nothing"
                );
            }
            Stage::Alert => {
                // The server finishes what it received before the kill.
                std::thread::sleep(Duration::from_millis(300));
                let recorded = self.alert_rows();
                let delivered: HashSet<String> = message_ids(&self.sink).into_keys().collect();
                self.in_flight = delivered
                    .difference(&recorded.keys().map(|t| alert_id(t)).collect())
                    .cloned()
                    .collect();
                assert!(
                    self.in_flight.len() <= 1,
                    "alerts are sent one at a time, yet {} were delivered and not recorded: {:?}",
                    self.in_flight.len(),
                    self.in_flight
                );
            }
            _ => {}
        }
    }

    fn score_flaky(&mut self) {
        let endpoint = SageMaker::start_failing(2, 2);
        let summary = ok(&mut self.sagemaker(&endpoint, 6));
        assert_eq!(
            summary["fallback_records"], 0,
            "throttling and 503s are retried: {summary}"
        );
        let statuses: Vec<u64> = endpoint
            .requests()
            .iter()
            .map(|r| r["status"].as_u64().unwrap_or(0))
            .collect();
        assert_eq!(
            &statuses[..4],
            &[429, 429, 503, 503],
            "the faults were injected"
        );
        self.note(format!("sagemaker answered {statuses:?}"));
    }

    fn score_down(&mut self) {
        let down = SageMaker::start(10_000);
        let summary = ok(&mut self.sagemaker(&down, 2));
        let records = self.dir.records("scored.jsonl").len() as u64;
        assert_eq!(summary["fallback_records"], records, "{summary}");
        ok(&mut self.command(Stage::Load));
        let marked = self
            .db
            .count("SELECT count(*) FROM payments_scored WHERE needs_rescore");
        assert_eq!(
            marked as u64, records,
            "fallback rows are marked for re-scoring"
        );
        ok(&mut self.command(Stage::Alert));
        drop(down);
        // Back: score again with SageMaker (the load that follows replaces the rows).
        let back = SageMaker::start(0);
        let summary = ok(&mut self.sagemaker(&back, 2));
        assert_eq!(summary["fallback_records"], 0, "{summary}");
        self.note(format!(
            "{records} rows scored by the local fallback, then by SageMaker"
        ));
    }

    fn load_cut(&mut self, mode: &str) {
        let cluster = &self.shared.cluster;
        let mut blocker = self.db.client();
        let mut lock = blocker.transaction().expect("transaction");
        lock.batch_execute("LOCK TABLE payments_scored IN SHARE MODE")
            .expect("lock");
        let child = self
            .command(Stage::Load)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn load");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.db.count(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%payments_scored%'",
        ) == 0
        {
            assert!(Instant::now() < deadline, "load never reached its upsert");
            std::thread::sleep(Duration::from_millis(10));
        }
        cluster.stop(mode);
        drop(lock);
        drop(blocker);
        let out = child.wait_with_output().expect("wait load");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(3),
            "a load cut by a {mode} stop is 'unavailable': {stderr}"
        );
        assert!(stderr.contains("payments_scored"), "{stderr}");
        // While the server is down: exit 3, naming PostgreSQL.
        let stderr = fails(&mut self.command(Stage::Load), 3);
        assert!(stderr.contains("PostgreSQL unavailable"), "{stderr}");
        cluster.resume();
        assert_eq!(
            self.db.count("SELECT count(*) FROM payments_scored"),
            0,
            "nothing of the cut load was committed"
        );
        ok(&mut self.command(Stage::Load));
        self.note(format!(
            "load cut by a {mode} stop, refused while down, re-run after the restart"
        ));
    }

    fn alert_down(&mut self) {
        let first = ok(self.command(Stage::Alert).args(["--max-emails", "2"]));
        self.sink.stop();
        let stderr = fails(&mut self.command(Stage::Alert), 3);
        assert!(stderr.contains("SMTP server unavailable"), "{stderr}");
        self.sink.resume(1);
        fails(&mut self.command(Stage::Alert), 3);
        let last = ok(&mut self.command(Stage::Alert));
        self.note(format!(
            "alert sent {} before the outage, {} after",
            first["sent"], last["sent"]
        ));
    }

    /// The 4xx the scripted API ends with, in a mid-run refusal scenario.
    fn refusal(&self) -> Option<u16> {
        self.scenario.faults.iter().find_map(|f| match f {
            Fault::ApiRefusesMidRun(code) => Some(*code),
            _ => None,
        })
    }

    /// A 4xx after some bodies: extract keeps what it captured, exits 0, says why it stopped.
    fn extract_refused(&mut self) {
        let code = self.refusal().expect("a refusal scenario");
        let summary = ok(&mut self.command(Stage::Extract));
        let Api::Scripted(_, bodies) = self.api else {
            panic!("the refusal scenarios script the API")
        };
        assert_eq!(summary["records"], bodies as u64, "{summary}");
        assert!(summary["source_errors"].as_u64() >= Some(1), "{summary}");
        let stopped_by = summary["stopped_by"].as_str().unwrap_or_default();
        assert!(stopped_by.contains(&code.to_string()), "{summary}");
        self.note(format!("extract kept {bodies} records, then: {stopped_by}"));
    }

    /// The oldest predicted fraud's alert is refused for good: recorded `failed`, the others
    /// sent; not retried by the next run; sent by `--retry-failed` once the server accepts it.
    fn alert_refuses_one(&mut self) {
        let refused: String = self
            .db
            .client()
            .query_one(
                "SELECT trans_num FROM payments_scored WHERE predicted_fraud ORDER BY trans_time, trans_num LIMIT 1",
                &[],
            )
            .expect("a predicted fraud")
            .get(0);
        self.sink.refuse_containing(&[&refused]);
        let first = ok(&mut self.command(Stage::Alert));
        assert_eq!(first["failed"], 1, "{first}");
        let row = self
            .db
            .client()
            .query_one(
                "SELECT status, reason FROM fraud_alerts WHERE trans_num = $1",
                &[&refused],
            )
            .expect("the refused alert is recorded");
        let (status, reason): (String, Option<String>) = (row.get(0), row.get(1));
        assert_eq!(status, "failed");
        assert!(
            reason.unwrap_or_default().contains("554"),
            "the server's reply is kept"
        );
        let again = ok(&mut self.command(Stage::Alert));
        assert_eq!(
            (again["sent"].as_u64(), again["failed"].as_u64()),
            (Some(0), Some(0)),
            "{again}"
        );
        self.sink.refuse_containing(&[]);
        let retried = ok(self.command(Stage::Alert).arg("--retry-failed"));
        assert_eq!(retried["sent"], 1, "{retried}");
        self.note(format!(
            "{} sent, 1 refused and recorded failed, then sent by --retry-failed",
            first["sent"]
        ));
    }

    /// Two alert processes started together: each fraud is sent once between them.
    fn alerts_at_once(&mut self) {
        let children: Vec<_> = (0..2)
            .map(|_| {
                self.command(Stage::Alert)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn alert")
            })
            .collect();
        let sent: Vec<u64> = children
            .into_iter()
            .map(|child| {
                let out = child.wait_with_output().expect("wait alert");
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let summary: Value = serde_json::from_slice(&out.stdout).expect("summary");
                summary["sent"].as_u64().expect("sent")
            })
            .collect();
        self.note(format!("two alerts at once sent {sent:?}"));
    }

    fn alert_rows(&self) -> HashMap<String, String> {
        self.db
            .client()
            .query("SELECT trans_num, status FROM fraud_alerts", &[])
            .expect("fraud_alerts")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }
}

fn alert_id(trans_num: &str) -> String {
    format!("<fraud-alert.{trans_num}@fraudctl>")
}

/// Message-ID → how many messages the sink received with it.
fn message_ids(sink: &SmtpSink) -> HashMap<String, usize> {
    let mut ids = HashMap::new();
    for message in sink.messages() {
        *ids.entry(header(&message, "Message-ID").to_string())
            .or_insert(0) += 1;
    }
    ids
}

/// A stage file whose header's record count matches its lines.
fn complete(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let header: Value = serde_json::from_str(text.lines().next().unwrap_or(""))
        .map_err(|e| format!("header: {e}"))?;
    let announced = header["counts"]["records"].as_u64();
    let lines = text.lines().count() as u64 - 1;
    if announced == Some(lines) {
        Ok(())
    } else {
        Err(format!(
            "header announces {announced:?} records, file holds {lines}"
        ))
    }
}

/// The invariants every scenario must leave true.
fn check(w: &World) -> Result<String, String> {
    let mut failures = Vec::new();
    let mut fail = |m: String| failures.push(m);
    let dir = w.dir.path();

    // Stage files: complete, no temporary file left over.
    for entry in std::fs::read_dir(dir).expect("run dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".tmp") {
            fail(format!("temporary file {name} left in the run directory"));
        } else if let Err(e) = complete(&path) {
            fail(format!("{name} is not a complete stage file: {e}"));
        }
    }
    let raw = w.dir.records("raw.jsonl");
    let rejected = w.dir.records("raw.rejected.jsonl");
    let features_rejected = if w.dir.file("features.rejected.jsonl").exists() {
        w.dir.records("features.rejected.jsonl")
    } else {
        vec![]
    };

    // Nothing lost: every extracted trans_num is in payments_scored or rejected with a reason.
    let raw_nums: Vec<String> = raw
        .iter()
        .map(|r| r["trans_num"].as_str().unwrap_or_default().to_string())
        .collect();
    let unique: HashSet<&String> = raw_nums.iter().collect();
    if unique.len() != raw_nums.len() {
        fail(format!(
            "raw.jsonl holds {} records for {} trans_nums",
            raw_nums.len(),
            unique.len()
        ));
    }
    for r in rejected.iter().chain(&features_rejected) {
        if r["reason"].as_str().map_or(true, |s| s.trim().is_empty()) {
            fail(format!("a rejected record has no reason: {r}"));
        }
    }
    let rows: HashMap<String, (bool, bool)> =
        w.db.client()
            .query(
                "SELECT trans_num, predicted_fraud, needs_rescore FROM payments_scored",
                &[],
            )
            .expect("payments_scored")
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect();
    let lost: Vec<&String> = raw_nums
        .iter()
        .filter(|t| {
            !rows.contains_key(*t)
                && !features_rejected
                    .iter()
                    .any(|r| r["body"].as_str().is_some_and(|b| b.contains(t.as_str())))
        })
        .collect();
    if !lost.is_empty() {
        fail(format!(
            "{} extracted transactions are neither in payments_scored nor rejected: {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        ));
    }
    let strangers = rows.keys().filter(|t| !unique.contains(t)).count();
    if strangers > 0 {
        fail(format!(
            "{strangers} rows of payments_scored are not in raw.jsonl"
        ));
    }
    let stale = rows.values().filter(|(_, rescore)| *rescore).count();
    if stale > 0 {
        fail(format!("{stale} rows still wait for a re-score"));
    }

    // What the API sent is all accounted for (when no extract died holding some of it).
    let received = raw.len() + rejected.len();
    let sent = match &w.api {
        Api::Scripted(_, bodies) => Some(*bodies as u64),
        Api::Simulator(_) if w.notes.iter().any(|n| n.starts_with("extract killed")) => None,
        Api::Simulator(sim) => {
            let s = sim.stats();
            let timed_out = if w.has(Fault::ApiTimeouts) {
                s["slow"].as_u64().unwrap() * u64::from(w.scenario.rows_per_response)
            } else {
                0
            };
            Some(s["served"].as_u64().unwrap() + s["malformed"].as_u64().unwrap() - timed_out)
        }
    };
    if let Some(sent) = sent {
        if received as u64 != sent {
            fail(format!(
                "the API delivered {sent} transactions, raw.jsonl and raw.rejected.jsonl hold {received}"
            ));
        }
    }

    // Every predicted fraud alerted exactly once: one `sent` row and one email.
    let frauds: HashSet<&String> = rows
        .iter()
        .filter(|(_, (f, _))| *f)
        .map(|(t, _)| t)
        .collect();
    let alerts = w.alert_rows();
    let ids = message_ids(&w.sink);
    for trans_num in &frauds {
        let status = alerts.get(*trans_num).map(String::as_str);
        if status != Some("sent") {
            fail(format!(
                "fraud {trans_num}: alert {status:?}, expected sent"
            ));
        }
        let id = alert_id(trans_num);
        let copies = ids.get(&id).copied().unwrap_or(0);
        let allowed = if w.in_flight.contains(&id) { 2 } else { 1 };
        if copies == 0 || copies > allowed {
            fail(format!("fraud {trans_num}: {copies} emails"));
        }
    }
    if alerts.len() != frauds.len() {
        fail(format!(
            "{} fraud_alerts rows for {} predicted frauds",
            alerts.len(),
            frauds.len()
        ));
    }
    let unexpected: Vec<&String> = ids
        .keys()
        .filter(|id| !frauds.iter().any(|t| alert_id(t) == **id))
        .collect();
    if !unexpected.is_empty() {
        fail(format!("emails for no predicted fraud: {unexpected:?}"));
    }
    if frauds.is_empty() {
        fail("no predicted fraud: the scenario did not exercise alerts".into());
    }

    // And no card number in clear in what the scenario left behind.
    let mut files = String::new();
    for entry in std::fs::read_dir(dir).expect("run dir") {
        files.push_str(&std::fs::read_to_string(entry.expect("entry").path()).unwrap_or_default());
    }
    let leaked = card_numbers_in(&files, &w.shared.pans);
    if !leaked.is_empty() {
        fail(format!(
            "card numbers in clear in the run directory: {leaked:?}"
        ));
    }

    if failures.is_empty() {
        Ok(format!(
            "{} extracted, {} rejected, {} rows, {} frauds alerted{}",
            raw.len(),
            rejected.len() + features_rejected.len(),
            rows.len(),
            frauds.len(),
            if w.in_flight.is_empty() {
                String::new()
            } else {
                format!(", {} re-sent with its Message-ID", w.in_flight.len())
            }
        ))
    } else {
        Err(failures.join("\n      "))
    }
}

/// Card numbers the hostile bodies hide outside `cc_num` (other column names, free text,
/// numeric fields, a trans_num); the scan of the run's files looks for them too.
const HIDDEN_PANS: [&str; 4] = [
    "4767265376804500",
    "4532015112830366",
    "6011000990139424",
    "371449635398431",
];

/// Bodies a hostile or broken payments API could send, one transaction each, built from the
/// recorded response: the valid rows (a large evening online amount: predicted fraud), then
/// every kind of bad value, and card numbers where no `cc_num` column is.
fn hostile_bodies() -> Vec<String> {
    let fraud = |n: usize| {
        ApiRow::recorded(&format!("hostile{n}"))
            .set("amt", json!(2450.0))
            .set("category", json!("shopping_net"))
    };
    let [pan1, pan2, pan3, pan4] = HIDDEN_PANS;
    let mut bodies: Vec<String> = (0..3).map(|n| fraud(n).body()).collect();
    // Accepted, their card numbers masked wherever they stand.
    bodies.push(
        fraud(3)
            .set("merchant", json!(format!("Shop ref {pan1} ok")))
            .body(),
    );
    bodies.push(
        fraud(4)
            .set("city", json!(format!("{pan2}")))
            .set("job", json!(format!("x-{pan3}-y")))
            .body(),
    );
    let bad: Vec<(&str, Value)> = vec![
        ("amt", json!(1e308)),
        ("amt", json!(-60.16)),
        ("amt", json!("60.16")),
        ("amt", json!(60.123)),
        ("cc_num", json!(4.497913965512794e18)),
        ("cc_num", json!("4497-9139-6551-2794-052")),
        ("cc_num", json!("4497 9139 6551 2794 052")),
        ("cc_num", json!(-4497913965512794052_i64)),
        ("cc_num", Value::Null),
        ("current_time", json!(EVENING_MS.to_string())),
        ("current_time", json!(1e20)),
        ("zip", json!(10_000_000_000_u64)),
        ("zip", json!(pan1.parse::<u64>().unwrap())),
        ("city_pop", json!(-1)),
        ("lat", json!(1000.0)),
        ("lat", json!(pan2.parse::<f64>().unwrap())),
        ("long", json!(pan4)),
        ("dob", json!("yesterday")),
        ("dob", json!("2999-01-01")),
        ("gender", json!({"nested": [1, 2, {"deeper": null}]})),
        ("gender", json!({ pan3: pan4 })),
        ("state", json!("North Carolina")),
        ("state", json!(format!("card {pan1}"))),
        ("trans_num", json!("has spaces; DROP TABLE payments_scored")),
        ("trans_num", json!("x".repeat(100))),
        ("trans_num", json!(pan3)),
        ("merchant", json!("m".repeat(1_000_000))),
        ("merchant", json!([])),
        ("is_fraud", json!(2)),
    ];
    for (i, (name, value)) in bad.into_iter().enumerate() {
        bodies.push(fraud(100 + i).set(name, value).body());
    }
    // The card column under other names: rejected (no cc_num), the number masked.
    for (i, name) in ["cc_number", "card_number", "CC_NUM"]
        .into_iter()
        .enumerate()
    {
        bodies.push(
            fraud(200 + i)
                .rename("cc_num", name)
                .set(name, json!(pan4))
                .body(),
        );
    }
    bodies.push(fraud(0).body()); // a repeated trans_num
    let fixture: String = serde_json::from_str(
        &std::fs::read_to_string(shared().join("fixtures/current-transactions.json"))
            .expect("fixture"),
    )
    .expect("the fixture is a JSON string");
    bodies.extend([
        String::new(),
        "null".into(),
        "[".repeat(100_000),
        "9".repeat(2_000_000),
        "<html><body>card 4497 9139 6551 2794 052 declined</body></html>".into(),
        r#""{\"columns\": [\"cc_num\"], \"index\": [0], \"data\": [[4497913965512794052, 1, 2]]}""#
            .into(),
        r#"{"columns": [1, 2], "data": [[1, 2]]}"#.into(),
        r#"{"columns": ["cc_num"], "data": "4497913965512794052"}"#.into(),
        fixture[..fixture.len() / 3].to_string(),
    ]);
    bodies
}

/// What the API sends before it starts refusing: some evening online purchases (predicted
/// frauds) among ordinary payments.
fn refused_after_bodies() -> Vec<String> {
    (0..12)
        .map(|n| {
            let row = ApiRow::recorded(&format!("before-refusal{n}"));
            match n % 3 {
                0 => row
                    .set("amt", json!(2450.0))
                    .set("category", json!("shopping_net")),
                _ => row,
            }
            .body()
        })
        .collect()
}

/// Runs `cmd`, waits for its "started" log line, then `delay`, then SIGKILLs it; whether the kill
/// landed while it was still working (it had not exited yet).
fn kill_while_working(cmd: &mut Command, delay: Duration) -> bool {
    use std::io::BufRead;
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stage");
    let stderr = child.stderr.take().expect("stderr");
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("started") && line.contains("stage=") {
                started_tx.send(()).ok();
            }
        }
    });
    let started = started_rx.recv_timeout(Duration::from_secs(30)).is_ok();
    assert!(started, "{cmd:?} never logged that it started");
    std::thread::sleep(delay);
    let working = child.try_wait().expect("try_wait").is_none();
    child.kill().ok();
    child.wait().expect("wait");
    working
}

fn run_scenario(shared: &Shared, scenario: &Scenario, seed: u64) -> Result<String, String> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let refusal = scenario.faults.iter().find_map(|f| match f {
        Fault::ApiRefusesMidRun(code) => Some(*code),
        _ => None,
    });
    let api = if scenario.faults.contains(&Fault::HostileApi) {
        let bodies = hostile_bodies();
        let n = bodies.len();
        Api::Scripted(FixtureServer::sequence(bodies), n)
    } else if let Some(code) = refusal {
        let bodies = refused_after_bodies();
        let n = bodies.len();
        Api::Scripted(FixtureServer::sequence_then(bodies, code), n)
    } else {
        let sim_seed = rng.gen::<u32>().to_string();
        let csv = shared.csv.path().to_str().unwrap().to_string();
        let rows = scenario.rows_per_response.to_string();
        // The payments keep their own times: with the time of the request, the model's
        // predictions (the hour is a feature) would depend on when the tests run.
        let mut args = vec![
            "--csv",
            &csv,
            "--time-mode",
            "original",
            "--seed",
            &sim_seed,
            "--rows-per-response",
            &rows,
        ];
        args.extend_from_slice(scenario.api);
        Api::Simulator(Simulator::start(&args))
    };
    let mut world = World {
        shared,
        scenario,
        db: TestDb::on(&shared.cluster.admin_url()),
        dir: RunDir::new(),
        sink: SmtpSink::start(0),
        api,
        in_flight: HashSet::new(),
        notes: vec![],
        rng,
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        world.run();
    }));
    let notes = world.notes.join("; ");
    match outcome {
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("{msg}\n      ({notes})"))
        }
        Ok(()) => check(&world)
            .map(|summary| format!("{summary} ({notes})"))
            .map_err(|e| format!("{e}\n      ({notes})")),
    }
}

/// A line of the suite's report on stderr, shown even when the test passes (the harness only
/// captures `print!`/`eprint!`).
fn report(line: &str) {
    use std::io::Write;
    writeln!(std::io::stderr(), "{line}").ok();
}

#[test]
fn fault_scenarios_lose_duplicate_and_leak_nothing() {
    let seed: u64 = match std::env::var("FRAUDCTL_FAULT_SEED") {
        Ok(s) => s.parse().expect("FRAUDCTL_FAULT_SEED is a number"),
        Err(_) => rand::thread_rng().gen(),
    };
    report(&format!(
        "fault seed {seed} (replay with FRAUDCTL_FAULT_SEED={seed})"
    ));

    let rows: Vec<String> = std::fs::read_to_string(sample_csv())
        .expect("sample CSV")
        .lines()
        .map(String::from)
        .collect();
    // The header, then each of the sample's frauds followed by up to nine legitimate payments:
    // every scenario, however few payments it takes, has frauds to alert (about one in ten,
    // fewer than one run's --max-emails) and payments to leave alone.
    let (frauds, legit): (Vec<&String>, Vec<&String>) =
        rows[1..].iter().partition(|l| l.ends_with(",1"));
    let mut picked = vec![rows[0].clone()];
    for (fraud, others) in frauds.iter().zip(legit.chunks(9)) {
        picked.push(fraud.to_string());
        picked.extend(others.iter().map(|l| l.to_string()));
    }
    assert!(picked.len() > 100, "the sample has frauds");
    let mut csv = tempfile::NamedTempFile::new().expect("temp file");
    std::io::Write::write_all(&mut csv, picked.join("\n").as_bytes()).expect("write CSV");
    let mut pans = sample_pans();
    pans.insert("4497913965512794052".into()); // the recorded API response's card
    pans.extend(HIDDEN_PANS.map(String::from));
    let shared = Shared {
        cluster: PgCluster::start(),
        csv,
        pans,
    };

    let mut failed = Vec::new();
    for (i, scenario) in SCENARIOS.iter().enumerate() {
        let started = Instant::now();
        let outcome = run_scenario(&shared, scenario, seed.wrapping_add(i as u64));
        let took = started.elapsed().as_secs_f32();
        match outcome {
            Ok(summary) => report(&format!(
                "  ok    {} [{took:.1} s]: {summary}",
                scenario.name
            )),
            Err(why) => {
                report(&format!("  FAIL  {} [{took:.1} s]: {why}", scenario.name));
                failed.push(scenario.name);
            }
        }
    }
    let run = SCENARIOS.len();
    report(&format!(
        "fault scenarios: {run} run, {} passed, {} failed",
        run - failed.len(),
        failed.len()
    ));
    assert!(
        failed.is_empty(),
        "failed scenarios (seed {seed}): {failed:?}"
    );
}
