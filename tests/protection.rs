//! Data protection over a whole run of the real sample: no card number in clear anywhere the
//! pipeline writes or shows (database, stage and rejected files, logs at debug level, stdout
//! that Airflow pushes to XCom, emails, the report), stage files owner-only, and the secrets
//! (card-hash key, database password, SMTP password) never on a command line or in a log.

mod util;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use util::*;

const DB_PASSWORD: &str = "db-pass-7Kq2Wp9x";
const SMTP_PASSWORD: &str = "smtp-pass-Zr4vN8c1";

/// What a finished stage left: its stdout and stderr, and its command lines seen while it ran.
struct Watched {
    output: String,
    cmdlines: Vec<String>,
}

/// Runs `cmd` at debug level to completion, reading /proc/<pid>/cmdline while it runs.
fn watched(cmd: &mut Command) -> Watched {
    let mut child = cmd
        .env("FRAUDCTL_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stage");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            pipe.read_to_string(&mut text).expect("read output");
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let proc = format!("/proc/{}/cmdline", child.id());
    let mut cmdlines = Vec::new();
    let status = loop {
        if let Ok(raw) = std::fs::read(&proc) {
            if !raw.is_empty() {
                cmdlines.push(String::from_utf8_lossy(&raw).replace('\0', " "));
            }
        }
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let output = stdout.join().unwrap() + &stderr.join().unwrap();
    assert!(status.success(), "{cmd:?} failed with {status}:\n{output}");
    assert!(!cmdlines.is_empty(), "{cmd:?}: no command line seen");
    Watched { output, cmdlines }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn no_card_number_or_secret_leaks_from_a_run_of_the_sample() {
    let pans = sample_pans();
    let some_pan = pans.iter().find(|p| p.len() == 16).unwrap();
    let spaced = some_pan
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        !card_numbers_in(&format!("card {spaced}."), &pans).is_empty(),
        "the scan finds a card number written in groups"
    );

    let db = TestDb::new();
    let db_url = db
        .url
        .replacen("postgres@", &format!("postgres:{DB_PASSWORD}@"), 1);
    let sink = SmtpSink::with_login(SMTP_PASSWORD);
    // The whole sample, stamped now (so its frauds are alerted); some bodies garbled, with
    // their card numbers inside, as a broken API would send them.
    let sim = Simulator::start(&[
        "--csv",
        sample_csv().to_str().unwrap(),
        "--time-mode",
        "now",
        "--no-loop",
        "--rows-per-response",
        "50",
        "--malformed-rate",
        "0.1",
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("runs/run-1");
    let stage = |name: &str| {
        let mut cmd = fraudctl();
        cmd.arg(name)
            .arg("--run-dir")
            .arg(&run_dir)
            .env("FRAUDCTL_DATABASE_URL", &db_url);
        cmd
    };
    let mut runs = vec![
        watched(stage("extract").args([
            "--api-url",
            &sim.url(),
            "--max-records",
            "100000",
            "--poll-interval-ms",
            "0",
            "--retries",
            "0",
        ])),
        watched(
            stage("transform")
                .arg("--feature-spec")
                .arg(default_model().join("feature_spec.json")),
        ),
        watched(stage("score").arg("--model-dir").arg(default_model())),
        watched(&mut stage("load")),
        watched(
            stage("alert")
                .args(["--smtp-url", &sink.url(), "--to", "analysts@example.test"])
                .env("FRAUDCTL_SMTP_USERNAME", SMTP_USER)
                .env("FRAUDCTL_SMTP_PASSWORD", SMTP_PASSWORD),
        ),
    ];
    let today = chrono::Utc::now().date_naive().to_string();
    runs.push(watched(
        fraudctl()
            .args(["report", "--all", "--format", "csv", "--day", &today])
            .env("FRAUDCTL_DATABASE_URL", &db_url),
    ));

    let rejected = read_records(&run_dir.join("raw.rejected.jsonl"));
    assert!(
        rejected.iter().any(|r| r["body"].is_string()),
        "garbled bodies were kept (masked) for diagnosis"
    );
    let sent = db.count("SELECT count(*) FROM fraud_alerts WHERE status = 'sent'");
    assert!(sent > 0, "frauds were alerted");
    assert_eq!(
        sink.messages().len() as i64,
        sent,
        "each alert went through the authenticated SMTP session"
    );

    // Everything the run left or showed, in one text.
    let mut everything = db.dump();
    for entry in std::fs::read_dir(&run_dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{} is not owner-only", path.display());
        everything.push_str(&std::fs::read_to_string(&path).unwrap());
    }
    assert_eq!(mode(&run_dir), 0o700, "the run directory is owner-only");
    assert_eq!(mode(run_dir.parent().unwrap()), 0o700);
    for run in &runs {
        everything.push_str(&run.output);
    }
    everything.push_str(&sink.messages().concat());
    everything.push_str(&sink.decoded());
    assert!(
        everything.contains("payments_scored") && everything.contains("**** "),
        "the text searched holds the dump and the emails"
    );

    let leaked = card_numbers_in(&everything, &pans);
    assert!(
        leaked.is_empty(),
        "{} card numbers in clear, e.g. {:?}",
        leaked.len(),
        &leaked[..leaked.len().min(5)]
    );
    for (name, secret) in [
        ("card-hash key", PAN_KEY),
        ("database password", DB_PASSWORD),
        ("SMTP password", SMTP_PASSWORD),
    ] {
        assert!(
            !everything.contains(secret),
            "the {name} is in a file, log, email or the database"
        );
        for run in &runs {
            for cmdline in &run.cmdlines {
                assert!(
                    !cmdline.contains(secret),
                    "the {name} is on a command line: {cmdline}"
                );
            }
        }
    }
}
