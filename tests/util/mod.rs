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
    /// On the shared test cluster (FRAUDCTL_TEST_ADMIN_URL).
    pub fn new() -> Self {
        Self::on(&admin_url())
    }

    /// On the cluster of `admin_url` (e.g. a [`PgCluster`]'s).
    pub fn on(admin_url: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let admin_url = admin_url.to_string();
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

    /// The whole database as SQL text (`pg_dump`: every table, view and row).
    pub fn dump(&self) -> String {
        let out = run(Command::new(pg_bindir().join("pg_dump"))
            .arg("--no-owner")
            .arg(format!("--dbname={}", self.url)));
        assert!(
            out.status.success(),
            "pg_dump failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("pg_dump prints UTF-8")
    }
}

/// A migrated database no test loads into, shared by the tests: where `transform` finds no earlier
/// payment (the history of a batch is then the batch itself). Created once per cluster.
pub fn no_history_db() -> String {
    static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    URL.get_or_init(|| {
        let admin = admin_url();
        let url = format!(
            "{}/fraudctl_test_no_history",
            admin.rsplit_once('/').expect("URL with a database").0
        );
        ok(fraudctl()
            .args(["migrate", "--create-database"])
            .env("FRAUDCTL_DATABASE_URL", &url));
        url
    })
    .clone()
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

/// PostgreSQL's server programs: PG_BINDIR, else the newest /usr/lib/postgresql/*/bin (as
/// `scripts/pg.sh` finds them).
pub fn pg_bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let version = e.file_name().to_str()?.parse().ok()?;
                    let bin = e.path().join("bin");
                    bin.join("pg_ctl").exists().then_some((version, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
        .pop()
        .map(|(_, bin)| bin)
        .expect("no PostgreSQL server programs in /usr/lib/postgresql/*/bin: apt-get install postgresql, or set PG_BINDIR")
}

/// A throwaway PostgreSQL cluster of one test's own (initdb into a temporary directory, a free
/// port), so that stopping it never disturbs other tests. Removed when dropped.
pub struct PgCluster {
    dir: tempfile::TempDir,
    pub port: u16,
}

impl PgCluster {
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("fraudctl-pg-")
            .tempdir()
            .expect("temp dir");
        let cluster = PgCluster {
            dir,
            port: free_port(),
        };
        if is_root() {
            // PostgreSQL refuses to run as root: its programs run as the postgres user.
            let ids = run(Command::new("id").args(["-u", "postgres"]));
            let uid: u32 = String::from_utf8_lossy(&ids.stdout)
                .trim()
                .parse()
                .expect("a postgres user (the postgresql package creates it)");
            std::os::unix::fs::chown(cluster.dir.path(), Some(uid), None).expect("chown");
        }
        cluster.must(
            cluster
                .program("initdb")
                .arg("-D")
                .arg(cluster.data())
                .args([
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                ]),
        );
        cluster.resume();
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A PostgreSQL program run as the cluster's owner.
    fn program(&self, name: &str) -> Command {
        let path = pg_bindir().join(name);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        cmd.stdout(Stdio::null());
        cmd
    }

    fn must(&self, cmd: &mut Command) {
        let out = run(cmd);
        assert!(
            out.status.success(),
            "{cmd:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
        );
    }

    /// Starts (again) the server, waiting until it accepts connections.
    pub fn resume(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        self.must(
            self.program("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(self.dir.path().join("postgres.log"))
                .args(["-w", "-t", "60", "-o", &options, "start"]),
        );
    }

    /// Stops the server: `fast` as an operator's restart does (sessions terminated), or
    /// `immediate` as a crash would (sessions cut, recovery at the next start).
    pub fn stop(&self, mode: &str) {
        self.must(&mut self.stop_command(mode));
    }

    fn stop_command(&self, mode: &str) -> Command {
        let mut cmd = self.program("pg_ctl");
        cmd.arg("-D")
            .arg(self.data())
            .args(["-m", mode, "-w", "stop"]);
        cmd
    }

    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.data().join("postmaster.pid").exists() {
            self.stop_command("immediate").output().ok();
        }
    }
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
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
        Self::answering(move || (200, body.clone()))
    }

    /// Answers with each body in turn, then 503 (an API with nothing more to serve).
    pub fn sequence(bodies: Vec<String>) -> Self {
        Self::sequence_then(bodies, 503)
    }

    /// Answers with each body in turn, then `status` to every later request.
    pub fn sequence_then(bodies: Vec<String>, status: u16) -> Self {
        let bodies = std::sync::Mutex::new(bodies.into_iter());
        Self::answering(move || match bodies.lock().expect("lock").next() {
            Some(body) => (200, body),
            None => (status, "no more bodies".to_string()),
        })
    }

    fn answering(respond: impl Fn() -> (u16, String) + Send + 'static) -> Self {
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
                let (status, body) = respond();
                request
                    .respond(tiny_http::Response::from_string(body).with_status_code(status))
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

/// A Python service process (scripts or tests/support), killed when dropped. It can be stopped
/// and started again in the same directory (same files, same logs).
pub struct PyService {
    child: Option<Child>,
    script: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    pub dir: tempfile::TempDir,
}

impl PyService {
    fn spawn(script: &str, args: &[&str]) -> Self {
        Self::spawn_with_env(script, args, &[])
    }

    fn spawn_with_env(script: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut service = PyService {
            child: None,
            script: script.to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            dir: tempfile::tempdir().expect("temp dir"),
        };
        service.resume();
        service
    }

    /// Starts the process again (after [`PyService::stop`]); `args` replace the last ones given.
    fn resume_with(&mut self, args: &[&str]) {
        self.args = args.iter().map(|a| a.to_string()).collect();
        self.resume();
    }

    fn resume(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("stderr.log"))
            .expect("log file");
        let child = Command::new(python())
            .arg(root().join(&self.script))
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} {}: {e} (create the venv with `make venv`)",
                    python().display(),
                    self.script
                )
            });
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    fn wait_until(&mut self, ready: impl Fn(&Path) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready(self.dir.path()) {
            let child = self.child.as_mut().expect("service started");
            if let Ok(Some(status)) = child.try_wait() {
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
        self.stop();
    }
}

/// scripts/smtp_sink.py: a real SMTP server keeping what it accepts.
pub struct SmtpSink {
    service: PyService,
    pub port: u16,
    /// Refusals it was started with (`--refuse-containing`, `--refuse-sender`), kept on resume.
    refusals: Vec<String>,
}

/// The SMTP account of [`SmtpSink::with_login`].
pub const SMTP_USER: &str = "alerts";

impl SmtpSink {
    /// Starts the sink on `port` (0: a free one); it answers 451 to the first `fail_first` messages.
    pub fn start_on(port: u16, fail_first: u32) -> Self {
        Self::spawn(port, fail_first, None, vec![])
    }
    pub fn start(fail_first: u32) -> Self {
        Self::start_on(0, fail_first)
    }
    /// A sink that requires AUTH as [`SMTP_USER`] with `password`.
    pub fn with_login(password: &str) -> Self {
        Self::spawn(0, 0, Some(password), vec![])
    }
    /// A sink that refuses for good (554) every message holding one of `texts`, and (553) the
    /// sender `sender`.
    pub fn refusing(texts: &[&str], sender: Option<&str>) -> Self {
        let mut refusals = Vec::new();
        for text in texts {
            refusals.extend(["--refuse-containing".to_string(), text.to_string()]);
        }
        if let Some(sender) = sender {
            refusals.extend(["--refuse-sender".to_string(), sender.to_string()]);
        }
        Self::spawn(0, 0, None, refusals)
    }

    fn spawn(port: u16, fail_first: u32, password: Option<&str>, refusals: Vec<String>) -> Self {
        let port = if port == 0 { free_port() } else { port };
        let args = Self::args(port, fail_first, &refusals);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let service = match password {
            None => PyService::spawn("scripts/smtp_sink.py", &args),
            Some(password) => PyService::spawn_with_env(
                "scripts/smtp_sink.py",
                &[args.as_slice(), &["--auth-user", SMTP_USER][..]].concat(),
                &[("FRAUDCTL_SMTP_SINK_PASSWORD", password)],
            ),
        };
        let mut sink = SmtpSink {
            service,
            port,
            refusals,
        };
        sink.wait_ready();
        sink
    }

    fn args(port: u16, fail_first: u32, refusals: &[String]) -> Vec<String> {
        let mut args = [
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--maildir",
            "mail",
            "--fail-first",
            &fail_first.to_string(),
        ]
        .map(String::from)
        .to_vec();
        args.extend_from_slice(refusals);
        args
    }

    fn wait_ready(&mut self) {
        let port = self.port;
        self.service
            .wait_until(|_| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    }

    /// The server goes down (what it received is kept).
    pub fn stop(&mut self) {
        self.service.stop();
    }

    /// Restarted (same port and mail directory) refusing for good every message that holds one
    /// of `texts` (none: accepting every message again).
    pub fn refuse_containing(&mut self, texts: &[&str]) {
        self.stop();
        self.refusals = texts
            .iter()
            .flat_map(|t| ["--refuse-containing".to_string(), t.to_string()])
            .collect();
        self.resume(0);
    }

    /// Up again on the same port and mail directory, refusing the first `fail_first` messages.
    pub fn resume(&mut self, fail_first: u32) {
        let args = Self::args(self.port, fail_first, &self.refusals);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.service.resume_with(&args);
        self.wait_ready();
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
    /// Every message decoded as a reader sees it (headers, then each MIME part's text), by
    /// Python's email package (`smtp_sink.py dump`).
    pub fn decoded(&self) -> String {
        let out = run(Command::new(python())
            .arg(root().join("scripts/smtp_sink.py"))
            .arg("dump")
            .arg("--maildir")
            .arg(self.service.dir.path().join("mail")));
        assert!(
            out.status.success(),
            "smtp_sink.py dump: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8")
    }
    /// The server's own log (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.service.dir.path().join("stderr.log")).unwrap_or_default()
    }
}

/// The value of the header `name` in a raw message ("" if absent).
pub fn header<'a>(message: &'a str, name: &str) -> &'a str {
    message
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or("")
}

/// tests/support/sagemaker_endpoint.py: moto's sagemaker-runtime behind an XGBoost-scoring proxy.
pub struct SageMaker {
    service: PyService,
    pub url: String,
}

pub const SAGEMAKER_ENDPOINT: &str = "fraud-xgb";

impl SageMaker {
    pub fn start(throttle_first: u32) -> Self {
        Self::start_failing(throttle_first, 0)
    }

    /// An endpoint that answers 429 to the first `throttle_first` requests, then 503 to the next
    /// `unavailable_first`.
    pub fn start_failing(throttle_first: u32, unavailable_first: u32) -> Self {
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
                "--unavailable-first",
                &unavailable_first.to_string(),
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

/// The card numbers of `pans` that appear in `text`, with where: as a whole run of digits, or
/// split into groups by single spaces or dashes ("4497 9139 6551 2794 052", "4497-9139-...").
/// A card number inside a longer run of digits (a probability's decimals) does not count.
pub fn card_numbers_in(text: &str, pans: &std::collections::HashSet<String>) -> Vec<String> {
    let mut found = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        // Digit groups joined by single separators, starting at i.
        let start = i;
        let mut groups: Vec<&str> = Vec::new();
        loop {
            let g = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            groups.push(&text[g..i]);
            let separated = i + 1 < bytes.len()
                && matches!(bytes[i], b' ' | b'-')
                && bytes[i + 1].is_ascii_digit();
            if !separated {
                break;
            }
            i += 1;
        }
        for first in 0..groups.len() {
            let mut joined = String::new();
            for group in &groups[first..] {
                joined.push_str(group);
                if joined.len() > 19 {
                    break;
                }
                if pans.contains(&joined) {
                    let context = &text[start..i];
                    found.push(format!("{joined} in {context:?}"));
                }
            }
        }
    }
    found
}

/// One transaction as the payments API sends it, made from the recorded response
/// (`shared/fixtures/current-transactions.json`): change its values or column names, then take
/// its `body()`.
#[derive(Clone)]
pub struct ApiRow {
    columns: Vec<String>,
    row: Vec<serde_json::Value>,
}

/// 2020-06-21T23:30:00Z: late in the evening (UTC, the spec's time zone), when the sample's
/// frauds happen. A fixed time, so predictions do not depend on when the tests run.
pub const EVENING_MS: i64 = 1_592_782_200_000;

impl ApiRow {
    /// The recorded row, with trans_num `trans_num` and the time [`EVENING_MS`].
    pub fn recorded(trans_num: &str) -> Self {
        let fixture: String = serde_json::from_str(
            &std::fs::read_to_string(shared().join("fixtures/current-transactions.json"))
                .expect("fixture"),
        )
        .expect("the fixture is a JSON string");
        let doc: serde_json::Value = serde_json::from_str(&fixture).expect("split document");
        let columns = doc["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| c.as_str().expect("column name").to_string())
            .collect();
        let row = doc["data"][0].as_array().expect("a data row").clone();
        ApiRow { columns, row }
            .set("trans_num", trans_num.into())
            .set("current_time", EVENING_MS.into())
    }

    fn position(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    }

    /// The row with column `name` set to `value`.
    pub fn set(mut self, name: &str, value: serde_json::Value) -> Self {
        let i = self.position(name);
        self.row[i] = value;
        self
    }

    /// The row with column `from` named `to`.
    pub fn rename(mut self, from: &str, to: &str) -> Self {
        let i = self.position(from);
        self.columns[i] = to.to_string();
        self
    }

    /// The response body, a JSON string holding the split document (as the real API sends).
    pub fn body(&self) -> String {
        let doc = serde_json::json!({"columns": self.columns, "index": [0], "data": [self.row]});
        serde_json::Value::String(doc.to_string()).to_string()
    }
}
