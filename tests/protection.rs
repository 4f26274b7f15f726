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
    let sent =
        db.count("SELECT count(DISTINCT message_id) FROM fraud_alerts WHERE status = 'sent'");
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

/// Card numbers an input could carry outside `cc_num` (tests/fixtures/card_numbers.json writes
/// them in every format).
const ELSEWHERE: [&str; 7] = [
    "4767265376804500",
    "4532015112830366",
    "6011000990139424",
    "371449635398431",
    "5555555555554444",
    "4111111111111111",
    "4497913965512794052",
];

#[test]
fn card_numbers_anywhere_in_the_input_never_come_out() {
    let [p1, p2, p3, p4, p5, p6, _] = ELSEWHERE;
    let fraud = |id: &str| {
        ApiRow::recorded(id)
            .set("amt", serde_json::json!(2450.0))
            .set("category", serde_json::json!("shopping_net"))
    };
    let json = |s: &str| serde_json::json!(s);
    let bodies = vec![
        // Accepted: the card number in free text, in clear nowhere downstream (emails included).
        fraud("free-text-1")
            .set("merchant", json(&format!("Shop ref {p1} ok")))
            .body(),
        fraud("free-text-2")
            .set("city", json(p2))
            .set("job", json(&format!("{p3}-x")))
            .body(),
        // Rejected: the reason and the record are masked.
        fraud("numeric-1")
            .set("lat", serde_json::json!(p2.parse::<f64>().unwrap()))
            .body(),
        fraud("numeric-2")
            .set("city_pop", serde_json::json!(p4.parse::<u64>().unwrap()))
            .body(),
        fraud("renamed-1").rename("cc_num", "cc_number").body(),
        fraud("renamed-2")
            .rename("cc_num", "CC_NUM")
            .set("CC_NUM", json(p5))
            .body(),
        fraud(p6).body(),
    ];
    // The corpus of tests/fixtures/card_numbers.json: card numbers in every format as merchants
    // (masked, or refused with their control characters), near-misses that stay readable,
    // identifiers that hold a card number (refused).
    let corpus: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/card_numbers.json")).unwrap(),
    )
    .unwrap();
    let texts = |list: &serde_json::Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect()
    };
    let masked: Vec<String> = corpus["masked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| pair[0].as_str().unwrap().to_string())
        .collect();
    let kept: Vec<String> = texts(&corpus["kept"])
        .into_iter()
        .filter(|t| !t.trim().is_empty())
        .collect();
    let mut bodies = bodies;
    for (i, merchant) in masked.iter().chain(&kept).enumerate() {
        bodies.push(
            fraud(&format!("corpus-{i}"))
                .set("merchant", json(merchant))
                .body(),
        );
    }
    let refused_ids = texts(&corpus["identifiers"]["refused"]);
    bodies.extend(refused_ids.iter().map(|id| fraud(id).body()));
    let server = FixtureServer::sequence(bodies);
    let db = TestDb::new();
    let sink = SmtpSink::start(0);
    let dir = RunDir::new();
    let mut runs = vec![watched(dir.stage("extract").args([
        "--api-url",
        &server.url,
        "--retries",
        "0",
    ]))];
    // The same card numbers from a CSV whose card column is named otherwise.
    let csv_dir = RunDir::new();
    let sample = std::fs::read_to_string(sample_csv()).unwrap();
    let mut lines = sample.lines();
    let header = lines
        .next()
        .unwrap()
        .replacen(",cc_num,", ",card_number,", 1);
    let input = tempfile::tempdir().unwrap();
    let csv = input.path().join("renamed.csv");
    std::fs::write(&csv, [header.as_str(), lines.next().unwrap()].join("\n")).unwrap();
    runs.push(watched(
        csv_dir.stage("extract").arg("--from-csv").arg(&csv),
    ));
    runs.push(watched(
        dir.stage("transform")
            .arg("--feature-spec")
            .arg(default_model().join("feature_spec.json")),
    ));
    runs.push(watched(
        dir.stage("score").arg("--model-dir").arg(default_model()),
    ));
    runs.push(watched(
        dir.stage("load").env("FRAUDCTL_DATABASE_URL", &db.url),
    ));
    runs.push(watched(
        dir.stage("alert")
            .env("FRAUDCTL_DATABASE_URL", &db.url)
            .args(["--smtp-url", &sink.url(), "--max-age-hours", "1000000"]),
    ));
    assert!(
        !sink.messages().is_empty(),
        "the free-text frauds were alerted (their subjects name the merchant)"
    );
    let rejected = dir.records("raw.rejected.jsonl");
    let with_control = masked
        .iter()
        .filter(|m| m.chars().any(|c| c.is_control() && c != '\t'));
    assert_eq!(
        rejected.len(),
        5 + refused_ids.len() + with_control.count(),
        "{rejected:?}"
    );
    for r in &rejected {
        for personal in ["first", "last", "street", "dob", "zip", "lat", "long"] {
            assert!(
                r["record"].get(personal).is_none(),
                "{personal} kept in {r}"
            );
        }
    }
    assert_eq!(csv_dir.records("raw.rejected.jsonl").len(), 1);

    let mut everything = db.dump() + &sink.messages().concat() + &sink.decoded();
    for d in [&dir, &csv_dir] {
        for entry in std::fs::read_dir(d.path()).unwrap() {
            everything.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
        }
    }
    for run in &runs {
        everything.push_str(&run.output);
    }
    assert!(
        everything.contains("Shop ref ****4500 ok"),
        "the merchant is kept, masked"
    );
    let stored = db.dump();
    for near_miss in &kept {
        assert!(
            stored.contains(near_miss.as_str()),
            "{near_miss:?} stays readable"
        );
    }
    let mut pans: std::collections::HashSet<String> = ELSEWHERE.map(String::from).into();
    pans.insert(first_pan(&sample));
    let leaked = card_numbers_in(&everything, &pans);
    assert!(leaked.is_empty(), "card numbers in clear: {leaked:?}");
}

/// The card number of the sample's first row.
fn first_pan(sample: &str) -> String {
    sample
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .nth(2)
        .unwrap()
        .to_string()
}

#[test]
fn secrets_in_urls_are_never_printed() {
    // A payments API URL with credentials, down: the error, the logs and the summary hide them.
    // (On a port whose "127.0.0.1:PORT" reads as a card number, 12 digits passing Luhn, the
    // messages mask the address too, as they must any card number: not that port.)
    let readable = |port: u16| {
        let address = format!("127.0.0.1:{port}");
        fraudctl::pan::mask_digit_runs(&address) == address
    };
    let port = std::iter::repeat_with(free_port)
        .find(|p| readable(*p))
        .unwrap();
    let api = format!("http://api:{DB_PASSWORD}@127.0.0.1:{port}/current-transactions?token={SMTP_PASSWORD}&page=1");
    let dir = RunDir::new();
    let out = util::run(
        dir.stage("extract")
            .args(["--retries", "0"])
            .env("FRAUDCTL_API_URL", &api)
            .env("FRAUDCTL_LOG", "debug"),
    );
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("api:***@127.0.0.1") && text.contains("token=***"),
        "{text}"
    );
    // Captured, then the API goes away: the summary (pushed to XCom) and origins hide them too.
    let server = FixtureServer::sequence(vec![ApiRow::recorded("t-url").body()]);
    let api = server
        .url
        .replacen("http://", &format!("http://api:{DB_PASSWORD}@"), 1)
        + &format!("?token={SMTP_PASSWORD}");
    let out = util::run(
        dir.stage("extract")
            .args(["--retries", "0"])
            .env("FRAUDCTL_API_URL", &api),
    );
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let files = std::fs::read_to_string(dir.file("raw.jsonl")).unwrap();
    // A database URL in libpq's key=value form, or with ?password=, in a refused connection.
    let mut texts = vec![text.into_owned(), files];
    for url in [
        format!("host=127.0.0.1 port={port} user=u password={DB_PASSWORD} dbname=fraud_db"),
        format!("postgres://u@127.0.0.1:{port}/fraud_db?password={DB_PASSWORD}"),
    ] {
        let out = util::run(
            fraudctl()
                .args(["report", "--day", "2026-11-30"])
                .env("FRAUDCTL_DATABASE_URL", &url),
        );
        texts.push(String::from_utf8_lossy(&out.stderr).into_owned());
        assert_eq!(out.status.code(), Some(3), "{}", texts.last().unwrap());
    }
    for text in &texts {
        assert!(
            !text.contains(DB_PASSWORD) && !text.contains(SMTP_PASSWORD),
            "a secret was printed: {text}"
        );
    }
}
