//! Databases for the tests: a fresh migrated database per test on the shared cluster
//! ([`TestDb`]), a shared one nothing is loaded into ([`no_history_db`]), and a throwaway
//! cluster of a test's own that it may stop and restart ([`PgCluster`]).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use super::{default_model, fraudctl, free_port, ok, run, sample_csv, RunDir, Simulator};

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

    /// `fraudctl report --day DAY --format FORMAT` on this database, which must succeed: its
    /// stdout.
    pub fn report(&self, day: &str, format: &str) -> String {
        let out = super::run(self.cmd("report").args(["--day", day, "--format", format]));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A loaded run of the sample's first 3,600 transactions, at their original times (so the
    /// predictions do not depend on the hour the test runs at: 18 predicted frauds).
    pub fn loaded_sample_run(&self) -> RunDir {
        let dir = extracted_sample(3600);
        ok(dir
            .stage("transform")
            .arg("--feature-spec")
            .arg(default_model().join("feature_spec.json")));
        ok(dir.stage("score").arg("--model-dir").arg(default_model()));
        ok(self
            .cmd("load")
            .arg("--run-dir")
            .arg(dir.path())
            .args(["--run-id", "test-run"]));
        dir
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

/// A run directory whose raw.jsonl holds the sample's first `records` transactions, extracted
/// at their original times.
pub fn extracted_sample(records: u32) -> RunDir {
    let sim = Simulator::start(&[
        "--csv",
        sample_csv().to_str().unwrap(),
        "--time-mode",
        "original",
        "--rows-per-response",
        "100",
    ]);
    let dir = RunDir::new();
    ok(dir.stage("extract").args([
        "--api-url",
        &sim.url(),
        "--max-records",
        &records.to_string(),
        "--poll-interval-ms",
        "0",
    ]));
    dir
}
