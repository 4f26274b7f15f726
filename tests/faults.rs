//! Fault injection over the whole pipeline: each scenario runs extract → transform → score →
//! load → alert against real services (the payments simulator with faults, a PostgreSQL cluster
//! of this test's own that it crashes and restarts, the SMTP sink that it stops and restarts, the
//! SageMaker endpoint throttling and failing), kills stages with SIGKILL at random points and
//! re-runs them, then checks the same invariants after every scenario (`INVARIANTS`, one function
//! each, read by `check`).
//!
//! Random choices (kill delays, the simulator's fault sequence) come from one seeded RNG: the
//! seed is printed, and FRAUDCTL_FAULT_SEED=<seed> replays a run. FRAUDCTL_FAULT_SCENARIO=<text>
//! runs only the scenarios whose name holds it (e.g. "SMTP", "killed after"); with the seed of a
//! whole run, each replays as it ran there.

mod util;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
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
    /// The API answers the bodies of `tests/fixtures/hostile/`: huge values, wrong types, broken
    /// JSON, card numbers where no `cc_num` is.
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
    /// Two `extract` processes on one run directory, 0.3 s apart (a manual run, `dags test` or
    /// a zombie retry meeting the scheduled run).
    TwoExtractsOneRunDir,
    /// The SMTP server accepts an email and `alert` is killed before it hears so; a later fraud
    /// of the same card is loaded meanwhile.
    AlertKilledAfterAcceptance,
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
        name: "two extract processes on one run directory",
        // 30 ms a response: the first extract still works when the second starts.
        api: &["--slow-rate", "1", "--slow-ms", "30"],
        faults: &[Fault::TwoExtractsOneRunDir],
        rows_per_response: 100,
        records: 4000,
    },
    Scenario {
        name: "alert killed after the SMTP server accepted its email, a fraud loaded meanwhile",
        api: &[],
        faults: &[Fault::AlertKilledAfterAcceptance],
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
                Stage::Alert if self.has(Fault::AlertKilledAfterAcceptance) => {
                    self.alert_killed_after_acceptance()
                }
                Stage::Extract if self.has(Fault::TwoExtractsOneRunDir) => self.extracts_at_once(),
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
        if stage == Stage::Alert {
            // A slow server: a whole kill window between storing a message and its 250, so that
            // even a run of one email outlasts the window (a retry would find every email sent).
            self.sink
                .stall_after_store(Stage::Alert.kill_window_ms() as f32 / 1000.0);
        }
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
                let sent: HashSet<String> = self
                    .alert_rows()
                    .into_values()
                    .filter(|(status, _)| status == "sent")
                    .map(|(_, id)| id)
                    .collect();
                let delivered: HashSet<String> = message_ids(&self.sink).into_keys().collect();
                self.in_flight = delivered.difference(&sent).cloned().collect();
                assert!(
                    self.in_flight.len() <= 1,
                    "alerts are sent one at a time, yet {} were delivered and not recorded: {:?}",
                    self.in_flight.len(),
                    self.in_flight
                );
                self.sink.refuse_containing(&[]); // no stall any more
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

    /// The email of the oldest predicted fraud (with its card's other frauds) is refused for
    /// good: its frauds recorded `failed`, the other emails sent; not retried by the next run;
    /// sent by `--retry-failed` once the server accepts it.
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
        let in_refused_email: i64 = self
            .db
            .client()
            .query_one(
                "SELECT count(*) FROM fraud_alerts WHERE status = 'failed' AND message_id = $1",
                &[&alert_id(&refused)],
            )
            .expect("fraud_alerts")
            .get(0);
        assert!(in_refused_email >= 1, "{first}");
        assert_eq!(first["failed"].as_i64(), Some(in_refused_email), "{first}");
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
        assert_eq!(retried["sent"], first["failed"], "{retried}");
        assert_eq!(retried["emails"], 1, "{retried}");
        self.note(format!(
            "{} sent, an email of {in_refused_email} refused and recorded failed, then sent by --retry-failed",
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

    /// Two extract processes on the run directory, the second 0.3 s after the first: the second
    /// waits for the first to finish, then reuses what it captured; the raw file is whole.
    fn extracts_at_once(&mut self) {
        let spawn = |w: &Self| {
            w.command(Stage::Extract)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn extract")
        };
        let first = spawn(self);
        std::thread::sleep(Duration::from_millis(300));
        let second = spawn(self);
        let (summaries, stderrs): (Vec<Value>, Vec<String>) = [first, second]
            .into_iter()
            .map(|child| {
                let out = child.wait_with_output().expect("wait extract");
                let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
                assert!(out.status.success(), "{stderr}");
                (
                    serde_json::from_slice(&out.stdout).expect("summary"),
                    stderr,
                )
            })
            .unzip();
        assert!(
            stderrs[1].contains("waiting for another process"),
            "the second extract waited: {}",
            stderrs[1]
        );
        assert_eq!(summaries[0]["reused"], false, "{}", summaries[0]);
        assert_eq!(summaries[1]["reused"], true, "{}", summaries[1]);
        assert_eq!(summaries[1]["records"], summaries[0]["records"]);
        complete(&self.dir.file("raw.jsonl")).expect("a whole raw file");
        self.note(format!(
            "the second extract waited for the first, then reused its {} records",
            summaries[0]["records"]
        ));
    }

    /// The SMTP server stores the first email and takes its time to answer: `alert` is killed
    /// in between, its frauds recorded `sending`. The newest fraud of that email's card was
    /// hidden until then (as if loaded after the kill). The next run sends the email again, the
    /// same frauds under the same Message-ID, and the new fraud in an email of its own.
    fn alert_killed_after_acceptance(&mut self) {
        let card_frauds: Vec<String> = self
            .db
            .client()
            .query(
                "WITH first AS (SELECT cc_hash FROM payments_scored WHERE predicted_fraud
                                ORDER BY trans_time, trans_num LIMIT 1)
                 SELECT trans_num FROM payments_scored JOIN first USING (cc_hash)
                 WHERE predicted_fraud ORDER BY trans_time, trans_num",
                &[],
            )
            .expect("the first card's frauds")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(
            card_frauds.len() >= 2,
            "the first alerted card has one fraud only: {card_frauds:?}"
        );
        let later = card_frauds.last().expect("frauds").clone();
        let flip = |w: &Self, fraud: bool| {
            w.db.client()
                .execute(
                    "UPDATE payments_scored SET predicted_fraud = $2 WHERE trans_num = $1",
                    &[&later, &fraud],
                )
                .expect("flip the later fraud");
        };
        flip(self, false);
        self.sink.stall_after_store(30.0);
        let mut alert = self
            .command(Stage::Alert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn alert");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.sink.messages().is_empty() {
            assert!(
                Instant::now() < deadline,
                "the server never stored an email"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        alert.kill().ok();
        alert.wait().expect("wait alert");
        let accepted = header(&self.sink.messages()[0], "Message-ID").to_string();
        let sending = self.db.count(&format!(
            "SELECT count(*) FROM fraud_alerts WHERE status = 'sending' AND message_id = '{accepted}'"
        ));
        assert_eq!(
            sending as usize,
            card_frauds.len() - 1,
            "the email's frauds wait, `sending`"
        );
        flip(self, true);
        self.sink.refuse_containing(&[]);
        ok(&mut self.command(Stage::Alert));
        let copies = self.sink.decoded_messages();
        let id_line = format!("Message-ID: {accepted}");
        let again: Vec<&String> = copies
            .iter()
            .filter(|m| m.lines().any(|l| l == id_line))
            .collect();
        assert_eq!(again.len(), 2, "the accepted email, then the same again");
        assert!(
            again.iter().all(|m| !m.contains(&later)),
            "the later fraud is in neither copy of the interrupted email"
        );
        let (_, later_email) = &self.alert_rows()[&later];
        assert_ne!(
            *later_email, accepted,
            "the later fraud has an email of its own"
        );
        self.in_flight.insert(accepted);
        self.note(format!(
            "alert killed after the server took an email of {} frauds: sent again as it was, the card's later fraud in a follow-up",
            card_frauds.len() - 1
        ));
    }

    /// fraud_alerts: trans_num → (status, the Message-ID of the email it went in).
    fn alert_rows(&self) -> HashMap<String, (String, String)> {
        self.db
            .client()
            .query(
                "SELECT trans_num, status, message_id FROM fraud_alerts",
                &[],
            )
            .expect("fraud_alerts")
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
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

/// Checks the invariants every scenario must leave true ([`INVARIANTS`]), all of them: each one
/// broken is named with the scenario and its evidence.
fn check(w: &World) -> Result<String, String> {
    let outcome = Outcome::read(w);
    let broken: Vec<String> = INVARIANTS
        .iter()
        .filter_map(|(name, holds)| {
            let evidence = holds(&outcome).err()?;
            Some(format!(
                "invariant {name} broken in {:?}: {evidence}",
                w.scenario.name
            ))
        })
        .collect();
    if broken.is_empty() {
        Ok(outcome.summary())
    } else {
        Err(broken.join("\n      "))
    }
}

/// An invariant: `Ok` where it holds, else the evidence that it does not.
type Invariant = fn(&Outcome) -> Result<(), String>;

/// `[(name, function)]` for invariant functions, each named for the property it states.
macro_rules! named {
    ($($invariant:ident),* $(,)?) => {
        &[$((stringify!($invariant), $invariant as Invariant)),*]
    };
}

const INVARIANTS: &[(&str, Invariant)] = named![
    no_temporary_file_left,
    every_run_file_is_a_complete_stage_file,
    each_payment_extracted_once,
    every_rejection_has_a_reason,
    no_payment_lost,
    no_row_that_was_not_extracted,
    no_row_awaits_a_rescore,
    every_payment_the_api_sent_is_captured_or_rejected,
    every_predicted_fraud_alert_recorded_sent,
    every_predicted_fraud_emailed_once,
    one_alert_row_per_predicted_fraud,
    no_email_without_a_predicted_fraud,
    some_fraud_predicted,
    no_card_number_in_any_run_file,
];

/// What a scenario left behind, read once for the invariants: the run directory, the tables,
/// the messages the SMTP server received.
struct Outcome<'a> {
    world: &'a World<'a>,
    /// Everything in the run directory, by name.
    files: Vec<PathBuf>,
    raw: Vec<Value>,
    rejected: Vec<Value>,
    /// features.rejected.jsonl's records (none where transform wrote no such file).
    features_rejected: Vec<Value>,
    /// raw.jsonl's trans_nums, in its order.
    extracted: Vec<String>,
    /// payments_scored: trans_num → (predicted_fraud, needs_rescore).
    rows: HashMap<String, (bool, bool)>,
    /// fraud_alerts: trans_num → (status, Message-ID of its email).
    alerts: HashMap<String, (String, String)>,
    /// Message-ID → how many messages the sink received with it.
    emails: HashMap<String, usize>,
}

impl<'a> Outcome<'a> {
    fn read(w: &'a World<'a>) -> Self {
        let mut files: Vec<PathBuf> = std::fs::read_dir(w.dir.path())
            .expect("run dir")
            .map(|entry| entry.expect("entry").path())
            .collect();
        files.sort();
        let raw = w.dir.records("raw.jsonl");
        let extracted = raw
            .iter()
            .map(|r| r["trans_num"].as_str().unwrap_or_default().to_string())
            .collect();
        let features_rejected = match w.dir.file("features.rejected.jsonl").exists() {
            true => w.dir.records("features.rejected.jsonl"),
            false => vec![],
        };
        Outcome {
            world: w,
            files,
            rejected: w.dir.records("raw.rejected.jsonl"),
            raw,
            features_rejected,
            extracted,
            rows: scored_rows(&w.db),
            alerts: w.alert_rows(),
            emails: message_ids(&w.sink),
        }
    }

    /// The trans_nums predicted fraud in payments_scored.
    fn frauds(&self) -> HashSet<&String> {
        self.rows
            .iter()
            .filter(|(_, (fraud, _))| *fraud)
            .map(|(t, _)| t)
            .collect()
    }

    /// The line a passing scenario reports.
    fn summary(&self) -> String {
        let in_flight = self.world.in_flight.len();
        format!(
            "{} extracted, {} rejected, {} rows, {} frauds alerted{}",
            self.raw.len(),
            self.rejected.len() + self.features_rejected.len(),
            self.rows.len(),
            self.frauds().len(),
            match in_flight {
                0 => String::new(),
                n => format!(", {n} re-sent with its Message-ID"),
            }
        )
    }
}

/// payments_scored: trans_num → (predicted_fraud, needs_rescore).
fn scored_rows(db: &TestDb) -> HashMap<String, (bool, bool)> {
    db.client()
        .query(
            "SELECT trans_num, predicted_fraud, needs_rescore FROM payments_scored",
            &[],
        )
        .expect("payments_scored")
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect()
}

/// Evidence that stays readable: how many `items` there are, and the first ten.
fn some_of<T: std::fmt::Debug>(items: &[T]) -> String {
    let more = if items.len() > 10 { ", …" } else { "" };
    format!("{} {:?}{more}", items.len(), &items[..items.len().min(10)])
}

/// `text` cut to 200 characters, for evidence that quotes records.
fn clip(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// The evidence `what: some_of(items)` where there are any `items`.
fn none(what: &str, items: &[impl std::fmt::Debug]) -> Result<(), String> {
    match items.is_empty() {
        true => Ok(()),
        false => Err(format!("{what}: {}", some_of(items))),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// A stage that fails or is killed removes its `.tmp` file or leaves it unread: none is left.
fn no_temporary_file_left(o: &Outcome) -> Result<(), String> {
    let tmp: Vec<String> = o
        .files
        .iter()
        .map(|p| file_name(p))
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    none("temporary files left in the run directory", &tmp)
}

/// Every other file of the run directory (but its lock file) is a stage file whose header
/// counts its lines.
fn every_run_file_is_a_complete_stage_file(o: &Outcome) -> Result<(), String> {
    let partial: Vec<String> = o
        .files
        .iter()
        .filter(|p| !file_name(p).ends_with(".tmp") && file_name(p) != ".lock")
        .filter_map(|p| Some(format!("{}: {}", file_name(p), complete(p).err()?)))
        .collect();
    none("not complete stage files", &partial)
}

/// raw.jsonl holds each trans_num once.
fn each_payment_extracted_once(o: &Outcome) -> Result<(), String> {
    let unique: HashSet<&String> = o.extracted.iter().collect();
    match unique.len() == o.extracted.len() {
        true => Ok(()),
        false => Err(format!(
            "raw.jsonl holds {} records for {} trans_nums",
            o.extracted.len(),
            unique.len()
        )),
    }
}

/// Every record of raw.rejected.jsonl and features.rejected.jsonl says why it was rejected.
fn every_rejection_has_a_reason(o: &Outcome) -> Result<(), String> {
    let silent: Vec<String> = o
        .rejected
        .iter()
        .chain(&o.features_rejected)
        .filter(|r| r["reason"].as_str().is_none_or(|s| s.trim().is_empty()))
        .map(|r| clip(&r.to_string()))
        .collect();
    none("rejected records without a reason", &silent)
}

/// Every extracted trans_num is in payments_scored, or in a body transform rejected.
fn no_payment_lost(o: &Outcome) -> Result<(), String> {
    let rejected_by_transform = |t: &str| {
        o.features_rejected
            .iter()
            .any(|r| r["body"].as_str().is_some_and(|b| b.contains(t)))
    };
    let lost: Vec<&String> = o
        .extracted
        .iter()
        .filter(|t| !o.rows.contains_key(*t) && !rejected_by_transform(t))
        .collect();
    none(
        "extracted transactions neither in payments_scored nor rejected",
        &lost,
    )
}

/// Every row of payments_scored comes from raw.jsonl.
fn no_row_that_was_not_extracted(o: &Outcome) -> Result<(), String> {
    let extracted: HashSet<&String> = o.extracted.iter().collect();
    let strangers: Vec<&String> = o.rows.keys().filter(|t| !extracted.contains(t)).collect();
    none("rows of payments_scored not in raw.jsonl", &strangers)
}

/// Rows scored by the local fallback have been scored again (none still `needs_rescore`).
fn no_row_awaits_a_rescore(o: &Outcome) -> Result<(), String> {
    let stale: Vec<&String> = o
        .rows
        .iter()
        .filter(|(_, (_, rescore))| *rescore)
        .map(|(t, _)| t)
        .collect();
    none("rows still waiting for a re-score", &stale)
}

/// What the API delivered is all in raw.jsonl or raw.rejected.jsonl (checked where that count
/// is known: not when an extract was killed holding some of it).
fn every_payment_the_api_sent_is_captured_or_rejected(o: &Outcome) -> Result<(), String> {
    let received = (o.raw.len() + o.rejected.len()) as u64;
    match delivered_by_api(o.world) {
        Some(sent) if sent != received => Err(format!(
            "the API delivered {sent} transactions, raw.jsonl and raw.rejected.jsonl hold \
             {received}"
        )),
        _ => Ok(()),
    }
}

/// How many transactions the scenario's API delivered, where known.
fn delivered_by_api(w: &World) -> Option<u64> {
    match &w.api {
        Api::Scripted(_, bodies) => Some(*bodies as u64),
        Api::Simulator(_) if w.notes.iter().any(|n| n.starts_with("extract killed")) => None,
        Api::Simulator(sim) => {
            let s = sim.stats();
            let count = |key: &str| s[key].as_u64().unwrap();
            let timed_out = match w.has(Fault::ApiTimeouts) {
                true => count("slow") * u64::from(w.scenario.rows_per_response),
                false => 0,
            };
            Some(count("served") + count("malformed") - timed_out)
        }
    }
}

/// Every predicted fraud has its fraud_alerts row, with status `sent`.
fn every_predicted_fraud_alert_recorded_sent(o: &Outcome) -> Result<(), String> {
    let unsent: Vec<String> = o
        .frauds()
        .into_iter()
        .filter_map(|t| {
            let status = o.alerts.get(t).map(|(status, _)| status.as_str());
            (status != Some("sent")).then(|| format!("{t}: {status:?}"))
        })
        .collect();
    none("predicted frauds whose alert is not recorded sent", &unsent)
}

/// The SMTP server received the email of every predicted fraud (the one its fraud_alerts row
/// names) once (twice for the one that an `alert` killed after sending had not recorded: the
/// at-least-once window, same Message-ID).
fn every_predicted_fraud_emailed_once(o: &Outcome) -> Result<(), String> {
    let wrong: Vec<String> = o
        .frauds()
        .into_iter()
        .filter_map(|t| {
            let id = o
                .alerts
                .get(t)
                .map(|(_, id)| id.clone())
                .unwrap_or_default();
            let copies = o.emails.get(&id).copied().unwrap_or(0);
            let allowed = if o.world.in_flight.contains(&id) {
                2
            } else {
                1
            };
            (copies == 0 || copies > allowed)
                .then(|| format!("{t}: {copies} emails, {allowed} allowed"))
        })
        .collect();
    none("predicted frauds not emailed once", &wrong)
}

/// fraud_alerts holds as many rows as there are predicted frauds.
fn one_alert_row_per_predicted_fraud(o: &Outcome) -> Result<(), String> {
    let frauds = o.frauds().len();
    match o.alerts.len() == frauds {
        true => Ok(()),
        false => Err(format!(
            "{} fraud_alerts rows for {frauds} predicted frauds",
            o.alerts.len()
        )),
    }
}

/// Every email the SMTP server received is the alert of predicted frauds.
fn no_email_without_a_predicted_fraud(o: &Outcome) -> Result<(), String> {
    let ids: HashSet<String> = o
        .frauds()
        .into_iter()
        .filter_map(|t| Some(o.alerts.get(t)?.1.clone()))
        .collect();
    let unexpected: Vec<&String> = o.emails.keys().filter(|id| !ids.contains(*id)).collect();
    none("emails (Message-IDs) for no predicted fraud", &unexpected)
}

/// The scenario predicted some fraud, so it exercised the alerts.
fn some_fraud_predicted(o: &Outcome) -> Result<(), String> {
    match o.frauds().is_empty() {
        true => Err(format!(
            "no predicted fraud among {} rows of payments_scored",
            o.rows.len()
        )),
        false => Ok(()),
    }
}

/// No card number of the sample, the recorded response or the hostile bodies stands in clear
/// in the run directory's files (read together, as one text).
fn no_card_number_in_any_run_file(o: &Outcome) -> Result<(), String> {
    let pans = &o.world.shared.pans;
    let texts: Vec<(String, String)> = o
        .files
        .iter()
        .map(|p| (file_name(p), std::fs::read_to_string(p).unwrap_or_default()))
        .collect();
    let all: String = texts.iter().map(|(_, text)| text.as_str()).collect();
    let leaked = card_numbers_in(&all, pans);
    if leaked.is_empty() {
        return Ok(());
    }
    let files: Vec<&str> = texts
        .iter()
        .filter(|(_, text)| !card_numbers_in(text, pans).is_empty())
        .map(|(name, _)| name.as_str())
        .collect();
    Err(format!(
        "card numbers in clear: {}, in {files:?}",
        some_of(&leaked)
    ))
}

/// Card numbers the hostile bodies hide outside `cc_num` (other column names, free text,
/// numeric fields, a trans_num); the scan of the run's files looks for them too.
const HIDDEN_PANS: [&str; 4] = [
    "4767265376804500",
    "4532015112830366",
    "6011000990139424",
    "371449635398431",
];

/// The bodies a hostile or broken payments API could send, one transaction each: the files of
/// `tests/fixtures/hostile/` in the order of their names (its README.md says what each tries).
fn hostile_bodies() -> Vec<String> {
    let dir = root().join("tests/fixtures/hostile");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("entry").path())
        .filter(|p| file_name(p) != "README.md")
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
        })
        .collect()
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

/// The scenarios to run, with their place in [`SCENARIOS`] (which their seed derives from):
/// those whose name holds FRAUDCTL_FAULT_SCENARIO, else all. A filter that selects none fails,
/// listing the names.
fn selected() -> impl Iterator<Item = (usize, &'static Scenario)> {
    let filter = std::env::var("FRAUDCTL_FAULT_SCENARIO").unwrap_or_default();
    let names: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
    assert!(
        names.iter().any(|n| n.contains(&filter)),
        "FRAUDCTL_FAULT_SCENARIO={filter:?} selects no scenario of {names:#?}"
    );
    SCENARIOS
        .iter()
        .enumerate()
        .filter(move |(_, s)| s.name.contains(&filter))
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
    for (i, scenario) in selected() {
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
    let run = selected().count();
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
