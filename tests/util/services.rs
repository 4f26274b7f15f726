//! The services the stages talk to, real ones, started for a test and stopped when dropped:
//! the payments simulator (`fraudctl serve-payments`), a fixture HTTP server, the SMTP sink
//! (`scripts/smtp_sink.py`) and the SageMaker endpoint (`tests/support/sagemaker_endpoint.py`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{default_model, fraudctl, root, run};

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
    /// `serve-payments` with `args`; the tests' synthetic stream is as fast as they poll
    /// (`--time-mode last-day`) unless `args` choose a time mode.
    pub fn start(args: &[&str]) -> Self {
        let port = free_port();
        let mut cmd = fraudctl();
        cmd.arg("serve-payments")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(args);
        if !args.contains(&"--time-mode") {
            cmd.args(["--time-mode", "last-day"]);
        }
        let child = cmd
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
    /// Options it was started with (refusals, a stall), kept on resume.
    options: Vec<String>,
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
            options: refusals,
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

    /// Restarted (same port and mail directory) storing each message `seconds` before it answers
    /// 250: a client killed in between had its message accepted without hearing it.
    pub fn stall_after_store(&mut self, seconds: f32) {
        self.stop();
        self.options = vec!["--stall-after-store".to_string(), seconds.to_string()];
        self.resume(0);
    }

    /// Restarted (same port and mail directory) refusing for good every message that holds one
    /// of `texts` (none: accepting every message again).
    pub fn refuse_containing(&mut self, texts: &[&str]) {
        self.stop();
        self.options = texts
            .iter()
            .flat_map(|t| ["--refuse-containing".to_string(), t.to_string()])
            .collect();
        self.resume(0);
    }

    /// Up again on the same port and mail directory, refusing the first `fail_first` messages.
    pub fn resume(&mut self, fail_first: u32) {
        let args = Self::args(self.port, fail_first, &self.options);
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
    /// Each message decoded (as [`SmtpSink::decoded`]), in order.
    pub fn decoded_messages(&self) -> Vec<String> {
        self.decoded()
            .split("\n== ")
            .map(|m| m.trim_start_matches("== ").to_string())
            .filter(|m| !m.trim().is_empty())
            .collect()
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
