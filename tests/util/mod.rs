//! Shared helpers for the integration tests: the built binary, a temporary run directory, a
//! fresh PostgreSQL database, a running payments simulator, a served fixture.
//!
//! PostgreSQL: the admin URL comes from FRAUDCTL_TEST_ADMIN_URL (default: the private cluster
//! of `scripts/pg.sh start`). Each test gets its own database, dropped afterwards.

#![allow(dead_code)] // each test file uses a different subset

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const PAN_KEY: &str = "integration-test-key-0123456789";

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
        "{cmd:?} failed with {}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("{cmd:?} printed nothing"));
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{cmd:?} printed {last:?}, not JSON: {e}"))
}

/// Runs a command that must fail with `code`; returns its stderr.
pub fn fails(cmd: &mut Command, code: i32) -> String {
    let out = run(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "{cmd:?}: expected exit {code}\nstderr:\n{stderr}"
    );
    stderr
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
    /// `fraudctl STAGE --run-dir DIR --run-id test-run`.
    pub fn stage(&self, stage: &str) -> Command {
        let mut cmd = fraudctl();
        cmd.arg(stage)
            .arg("--run-dir")
            .arg(self.path())
            .arg("--run-id")
            .arg("test-run");
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

/// A fresh, migrated database, dropped when the value is.
pub struct TestDb {
    pub name: String,
    pub url: String,
    admin_url: String,
}

fn admin_url() -> String {
    std::env::var("FRAUDCTL_TEST_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:55432/postgres".into())
}

impl TestDb {
    pub fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let admin_url = admin_url();
        let name = format!(
            "fraudctl_test_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let mut admin = postgres::Client::connect(&admin_url, postgres::NoTls).unwrap_or_else(|e| {
            panic!("cannot reach PostgreSQL at {admin_url} ({e}); start it with `scripts/pg.sh start` or set FRAUDCTL_TEST_ADMIN_URL")
        });
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .expect("drop stale test database");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create test database");
        let url = format!(
            "{}/{name}",
            admin_url.rsplit_once('/').expect("URL with a database").0
        );
        let db = TestDb {
            name,
            url,
            admin_url,
        };
        ok(&mut db.cmd("migrate"));
        db
    }

    /// `fraudctl SUBCOMMAND` pointed at this database.
    pub fn cmd(&self, subcommand: &str) -> Command {
        let mut cmd = fraudctl();
        cmd.arg(subcommand).env("FRAUDCTL_DATABASE_URL", &self.url);
        cmd
    }

    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).expect("connect to test database")
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.client().query_one(sql, &[]).expect(sql).get(0)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&self.admin_url, postgres::NoTls) {
            admin
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .ok();
        }
    }
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Waits until `url` answers 200.
pub fn wait_for(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if reqwest::blocking::get(url)
            .map(|r| r.status().is_success())
            .unwrap_or(false)
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{url} did not answer within 20 s");
}

/// A `fraudctl serve-payments` process, killed when dropped.
pub struct Simulator {
    child: Child,
    pub base: String,
}

impl Simulator {
    pub fn start(args: &[&str]) -> Self {
        let port = free_port();
        let child = fraudctl()
            .arg("serve-payments")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start serve-payments");
        let base = format!("http://127.0.0.1:{port}");
        wait_for(&format!("{base}/health"));
        Simulator { child, base }
    }
    pub fn url(&self) -> String {
        format!("{}/current-transactions", self.base)
    }
    pub fn stats(&self) -> serde_json::Value {
        serde_json::from_str(
            &reqwest::blocking::get(format!("{}/stats", self.base))
                .and_then(|r| r.text())
                .expect("stats"),
        )
        .expect("stats JSON")
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// A real HTTP server answering every request with the same body (a recorded API response).
pub struct FixtureServer {
    pub url: String,
    server: std::sync::Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FixtureServer {
    pub fn serve(body: String) -> Self {
        let server = std::sync::Arc::new(
            tiny_http::Server::http("127.0.0.1:0").expect("bind fixture server"),
        );
        let url = format!(
            "http://{}/current-transactions",
            server.server_addr().to_ip().expect("ip address")
        );
        let s = server.clone();
        let thread = std::thread::spawn(move || {
            for request in s.incoming_requests() {
                request
                    .respond(tiny_http::Response::from_string(body.clone()))
                    .ok();
            }
        });
        FixtureServer {
            url,
            server,
            thread: Some(thread),
        }
    }
}

impl Drop for FixtureServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
    }
}

/// The Python with the project's test services (FRAUDCTL_TEST_PYTHON, default .venv/bin/python).
pub fn python() -> PathBuf {
    std::env::var_os("FRAUDCTL_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/python"))
}

/// A Python service process (scripts or tests/support), killed when dropped.
pub struct PyService {
    child: Child,
    pub dir: tempfile::TempDir,
}

impl PyService {
    fn spawn(script: &str, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let child = Command::new(python())
            .arg(root().join(script))
            .args(args)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).expect("log file"))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} {script}: {e} (create the venv with `make venv`)",
                    python().display()
                )
            });
        PyService { child, dir }
    }

    fn wait_until(&mut self, ready: impl Fn(&Path) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready(self.dir.path()) {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log =
                    std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default();
                panic!("service exited with {status}:\n{log}");
            }
            assert!(Instant::now() < deadline, "service not ready within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PyService {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// scripts/smtp_sink.py: a real SMTP server keeping what it accepts.
pub struct SmtpSink {
    service: PyService,
    pub port: u16,
}

impl SmtpSink {
    /// Starts the sink on `port` (0: a free one); it answers 451 to the first `fail_first` messages.
    pub fn start_on(port: u16, fail_first: u32) -> Self {
        let port = if port == 0 { free_port() } else { port };
        let listen = format!("127.0.0.1:{port}");
        let mut service = PyService::spawn(
            "scripts/smtp_sink.py",
            &[
                "serve",
                "--listen",
                &listen,
                "--maildir",
                "mail",
                "--fail-first",
                &fail_first.to_string(),
            ],
        );
        service.wait_until(|_| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        SmtpSink { service, port }
    }
    pub fn start(fail_first: u32) -> Self {
        Self::start_on(0, fail_first)
    }
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }
    /// The raw messages received, in order.
    pub fn messages(&self) -> Vec<String> {
        let dir = self.service.dir.path().join("mail");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
            .iter()
            .map(|p| std::fs::read_to_string(p).expect("message"))
            .collect()
    }
}

/// tests/support/sagemaker_endpoint.py: moto's sagemaker-runtime behind an XGBoost-scoring proxy.
pub struct SageMaker {
    service: PyService,
    pub url: String,
}

pub const SAGEMAKER_ENDPOINT: &str = "fraud-xgb";

impl SageMaker {
    pub fn start(throttle_first: u32) -> Self {
        let model = default_model().join("model.json");
        let mut service = PyService::spawn(
            "tests/support/sagemaker_endpoint.py",
            &[
                "--model",
                model.to_str().unwrap(),
                "--endpoint",
                SAGEMAKER_ENDPOINT,
                "--port-file",
                "port",
                "--log",
                "requests.jsonl",
                "--throttle-first",
                &throttle_first.to_string(),
            ],
        );
        service.wait_until(|dir| dir.join("port").exists());
        let port = std::fs::read_to_string(service.dir.path().join("port")).expect("port file");
        SageMaker {
            service,
            url: format!("http://127.0.0.1:{}", port.trim()),
        }
    }
    /// The requests the endpoint received.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.service.dir.path().join("requests.jsonl"))
            .unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("log line"))
            .collect()
    }
}

/// `cmd` set up for the sagemaker scorer: test credentials, a region, the endpoint URL.
pub fn with_aws(cmd: &mut Command, endpoint_url: &str) {
    cmd.args([
        "--scorer",
        "sagemaker",
        "--sagemaker-endpoint-url",
        endpoint_url,
    ])
    .env("AWS_ACCESS_KEY_ID", "testing")
    .env("AWS_SECRET_ACCESS_KEY", "testing")
    .env("AWS_REGION", "us-east-1")
    .env("AWS_EC2_METADATA_DISABLED", "true")
    .env("AWS_CONFIG_FILE", "/dev/null")
    .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
}

/// extract (from the sample CSV, at most `n` rows) + transform with the default model's spec.
pub fn features_from_sample(dir: &RunDir, n: u32) {
    ok(dir
        .stage("extract")
        .arg("--from-csv")
        .arg(sample_csv())
        .args(["--max-records", &n.to_string()]));
    ok(dir
        .stage("transform")
        .arg("--feature-spec")
        .arg(default_model().join("feature_spec.json")));
}

/// The card numbers of the sample, in clear.
pub fn sample_pans() -> std::collections::HashSet<String> {
    let mut reader = csv::Reader::from_path(sample_csv()).expect("sample CSV");
    reader
        .records()
        .map(|r| r.expect("CSV row")[2].to_string())
        .collect()
}
