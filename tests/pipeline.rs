//! The core pipeline against a real PostgreSQL and a real `serve-payments` process:
//! extract → transform → score → load, idempotence, bad input, retries, crashes.

mod util;

use std::collections::HashSet;

use serde_json::Value;
use util::*;

/// extract + transform + score (local model) in `dir`; returns the extract summary.
fn extract_to_scored(dir: &RunDir, extract: &mut std::process::Command) -> Value {
    let summary = ok(extract);
    ok(dir
        .stage("transform")
        .arg("--feature-spec")
        .arg(default_model().join("feature_spec.json")));
    ok(dir.stage("score").arg("--model-dir").arg(default_model()));
    summary
}

/// A run directory with the whole sample extracted (from the CSV), transformed and scored.
fn scored_sample() -> RunDir {
    let dir = RunDir::new();
    extract_to_scored(
        &dir,
        dir.stage("extract").arg("--from-csv").arg(sample_csv()),
    );
    dir
}

/// `load` of `dir` into `db` as run `run_id`, by `connections` sessions.
fn load_by(db: &TestDb, dir: &RunDir, run_id: &str, connections: &str) -> Value {
    ok(db.cmd("load").arg("--run-dir").arg(dir.path()).args([
        "--run-id",
        run_id,
        "--connections",
        connections,
    ]))
}

#[test]
fn fixture_body_parses_to_the_exact_record() {
    let body =
        std::fs::read_to_string(shared().join("fixtures/current-transactions.json")).unwrap();
    let server = FixtureServer::serve(body);
    let dir = RunDir::new();
    let before = chrono::Utc::now().timestamp_millis();
    let summary = ok(dir
        .stage("extract")
        .args(["--api-url", &server.url, "--max-records", "1"]));
    let after = chrono::Utc::now().timestamp_millis();
    assert_eq!(summary["records"], 1);
    let pan = fraudctl::pan::PanProtector::new(PAN_KEY.as_bytes()).protect("4497913965512794052");
    let expected = serde_json::json!({
        "trans_num": "3cb54a489fb351f73a7db98f6c7bb1ad", "trans_time_ms": 1730134684025_i64,
        "cc_last4": "4052", "cc_hash": pan.hash, "merchant": "fraud_Berge, Kautzer and Harris",
        "category": "personal_care", "amt": 60.16, "gender": "M", "city": "Pembroke", "state": "NC",
        "zip": 28372, "lat": 34.6902, "long": -79.1834, "city_pop": 14783, "job": "Hospital doctor",
        "dob": "1955-11-07", "merch_lat": 34.38451, "merch_long": -78.621062, "is_fraud": false,
    });
    let mut record = dir.records("raw.jsonl").remove(0);
    let captured = record["captured_at_ms"]
        .take()
        .as_i64()
        .expect("its capture time");
    assert!(
        (before..=after).contains(&captured),
        "captured when its response arrived"
    );
    record.as_object_mut().unwrap().remove("captured_at_ms");
    assert_eq!(record, expected);
}

#[test]
fn real_sample_replays_through_the_pipeline_into_postgres() {
    let db = TestDb::new();
    let sim = Simulator::start(&[
        "--csv",
        sample_csv().to_str().unwrap(),
        "--time-mode",
        "original",
        "--no-loop",
    ]);
    let dir = RunDir::new();
    let summary = extract_to_scored(
        &dir,
        dir.stage("extract").args([
            "--api-url",
            &sim.url(),
            "--max-records",
            "6185",
            "--poll-interval-ms",
            "0",
        ]),
    );
    assert_eq!(
        (summary["records"].as_u64(), summary["rejected"].as_u64()),
        (Some(6185), Some(0))
    );
    let load = ok(db
        .cmd("load")
        .arg("--run-dir")
        .arg(dir.path())
        .args(["--run-id", "test-run"]));
    assert_eq!(load["inserted"], 6185);
    assert_eq!(db.count("SELECT count(*) FROM payments_scored"), 6185);
    assert_eq!(
        db.count("SELECT count(*) FROM payments_scored WHERE is_fraud_label"),
        870
    );
    // The frauds rank far above the legitimate payments.
    let mean = |label: bool| -> f64 {
        db.client()
            .query_one(
                "SELECT avg(fraud_probability) FROM payments_scored WHERE is_fraud_label = $1",
                &[&label],
            )
            .unwrap()
            .get(0)
    };
    assert!(
        mean(true) > 0.7 && mean(false) < 0.1,
        "fraud mean {} legit mean {}",
        mean(true),
        mean(false)
    );
    let audited = db.count("SELECT count(*) FROM pipeline_runs WHERE run_id = 'test-run'");
    assert_eq!(audited, 4, "extract, transform, score and load are audited");
}

/// A batch of new payments goes straight into payments_scored by COPY; one that meets a payment
/// loaded already, among its first rows (found before the COPY) or further on (the COPY fails
/// on the key and rolls back), is upserted instead, in one session or two. Every way writes the
/// same rows.
#[test]
fn copy_and_upsert_write_the_same_rows() {
    let db = TestDb::new();
    let dir = scored_sample();
    let load = |connections: &str| load_by(&db, &dir, "copy-or-upsert", connections);
    let rows = || -> Vec<String> {
        let sql = "SELECT (to_jsonb(p) - 'loaded_at' - 'updated_at')::text \
                   FROM payments_scored p ORDER BY trans_num";
        db.client()
            .query(sql, &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let copied = load("1");
    assert_eq!(
        (copied["method"].as_str(), copied["inserted"].as_i64()),
        (Some("copy"), Some(6185))
    );
    let by_copy = rows();
    // The amounts as the source wrote them (numeric's binary digits encoded by fraudctl).
    let sum: String = db
        .client()
        .query_one("SELECT sum(amt)::text FROM payments_scored", &[])
        .unwrap()
        .get(0);
    let csv_sum: f64 = dir
        .records("raw.jsonl")
        .iter()
        .map(|r| r["amt"].as_f64().unwrap())
        .sum();
    assert_eq!(sum, format!("{csv_sum:.2}"));
    let trans_num = |record: usize| dir.records("scored.jsonl")[record]["tx"]["trans_num"].clone();
    // (the one payment kept, sessions): the batch's first record, then one far past the first
    // thousand the load looks up before choosing.
    for (kept, connections) in [(0, "1"), (3000, "1"), (3000, "2")] {
        let kept = trans_num(kept);
        db.client()
            .execute(
                "DELETE FROM payments_scored WHERE trans_num <> $1",
                &[&kept.as_str().unwrap()],
            )
            .unwrap();
        let summary = load(connections);
        let counts = ["inserted", "updated", "unchanged"].map(|k| summary[k].as_i64().unwrap());
        assert_eq!(
            (summary["method"].as_str(), counts),
            (Some("upsert"), [6184, 0, 1]),
            "kept {kept}, {connections} sessions: {summary}"
        );
        assert!(
            rows() == by_copy,
            "kept {kept}, {connections} sessions: the upserted rows differ from the copied ones"
        );
    }
}

/// A batch no longer than the probe (every minute's run) goes to COPY without looking first;
/// loaded again, the COPY fails on its first payment and the batch is upserted, unchanged.
#[test]
fn a_small_batch_loaded_again_is_upserted_after_its_copy_fails() {
    let db = TestDb::new();
    let dir = RunDir::new();
    extract_to_scored(
        &dir,
        dir.stage("extract")
            .arg("--from-csv")
            .arg(sample_csv())
            .args(["--max-records", "50"]),
    );
    let load = || {
        let s = load_by(&db, &dir, "small", "1");
        let counts = ["inserted", "updated", "unchanged"].map(|k| s[k].as_i64().unwrap());
        (s["method"].as_str().unwrap().to_string(), counts)
    };
    assert_eq!(load(), ("copy".to_string(), [50, 0, 0]));
    assert_eq!(load(), ("upsert".to_string(), [0, 0, 50]));
    assert_eq!(db.count("SELECT count(*) FROM payments_scored"), 50);
}

#[test]
fn every_stage_is_idempotent() {
    let db = TestDb::new();
    let dir = RunDir::new();
    let csv = sample_csv();
    let extract = || {
        let mut cmd = dir.stage("extract");
        cmd.arg("--from-csv").arg(&csv).arg("--refetch");
        cmd
    };
    extract_to_scored(&dir, &mut extract());
    let load = || {
        ok(db
            .cmd("load")
            .arg("--run-dir")
            .arg(dir.path())
            .args(["--run-id", "test-run"]))
    };
    let first = load();
    assert_eq!(
        first["method"], "copy",
        "a batch of new payments goes in by COPY"
    );
    let snapshot = |db: &TestDb| -> Vec<String> {
        db.client()
            .query("SELECT row_to_json(p)::text FROM (SELECT trans_num, amt, fraud_probability, predicted_fraud, model_version, loaded_at, updated_at FROM payments_scored ORDER BY trans_num) p", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let rows_before = snapshot(&db);
    let files_before: Vec<_> = ["raw.jsonl", "features.jsonl", "scored.jsonl"]
        .iter()
        .map(|f| dir.records(f))
        .collect();

    // Every stage again, in order: same records, same rows, nothing inserted or updated.
    extract_to_scored(&dir, &mut extract());
    let second = load();
    let files_after: Vec<_> = ["raw.jsonl", "features.jsonl", "scored.jsonl"]
        .iter()
        .map(|f| dir.records(f))
        .collect();
    assert_eq!(files_before, files_after, "stage files are deterministic");
    assert_eq!(first["inserted"], 6185);
    assert_eq!(
        (
            second["inserted"].as_i64(),
            second["updated"].as_i64(),
            second["unchanged"].as_i64()
        ),
        (Some(0), Some(0), Some(6185))
    );
    assert_eq!(
        second["method"], "upsert",
        "a batch loaded already is upserted"
    );
    assert_eq!(
        rows_before,
        snapshot(&db),
        "a re-run leaves every row untouched"
    );
    // Without --refetch, extract reuses the captured raw file.
    let reused = ok(dir
        .stage("extract")
        .args(["--api-url", "http://127.0.0.1:9/unused"]));
    assert_eq!(reused["reused"], true);
}

#[test]
fn faulty_api_loses_and_duplicates_nothing() {
    let db = TestDb::new();
    let sim = Simulator::start(&[
        "--error-rate",
        "0.3",
        "--malformed-rate",
        "0.15",
        "--duplicate-rate",
        "0.1",
        "--seed",
        "7",
        "--fraud-rate",
        "0.1",
    ]);
    let dir = RunDir::new();
    extract_to_scored(
        &dir,
        dir.stage("extract").args([
            "--api-url",
            &sim.url(),
            "--max-records",
            "300",
            "--poll-interval-ms",
            "0",
        ]),
    );
    ok(db
        .cmd("load")
        .arg("--run-dir")
        .arg(dir.path())
        .args(["--run-id", "test-run"]));
    let stats = sim.stats();
    let raw = dir.records("raw.jsonl");
    let rejected = dir.records("raw.rejected.jsonl");
    assert!(
        stats["errors"].as_u64().unwrap() > 0,
        "500s were injected and retried: {stats}"
    );
    // Every transaction the server sent is either extracted or rejected with a reason.
    let sent = stats["served"].as_u64().unwrap() + stats["malformed"].as_u64().unwrap();
    assert_eq!(raw.len() as u64 + rejected.len() as u64, sent, "{stats}");
    let reasons: Vec<&str> = rejected
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    for expected in [
        "duplicate trans_num",
        "amt must be a number",
        "missing field merchant",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(expected)),
            "no rejection for {expected:?} in {reasons:?}"
        );
    }
    let unique: HashSet<&str> = raw
        .iter()
        .map(|r| r["trans_num"].as_str().unwrap())
        .collect();
    assert_eq!(
        unique.len(),
        raw.len(),
        "raw.jsonl holds each trans_num once"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM payments_scored") as usize,
        raw.len()
    );
}

#[test]
fn bad_records_from_a_csv_are_rejected_with_reasons() {
    let dir = RunDir::new();
    let mut text = std::fs::read_to_string(sample_csv()).unwrap();
    let lines: Vec<&str> = text.lines().take(4).collect();
    // Row 1 intact; row 2 with a float card number; row 3 with an amount of 10^12; row 1 again.
    let bad_card = lines[2].replacen(
        &lines[2].split(',').nth(2).unwrap().to_string(),
        "6.30423337322e11",
        1,
    );
    let huge = lines[3].replacen(",220.11,", ",1000000000000,", 1);
    text = [lines[0], lines[1], &bad_card, &huge, lines[1]].join("\n");
    let csv = dir.file("input.csv");
    std::fs::write(&csv, text).unwrap();
    let summary = ok(dir.stage("extract").arg("--from-csv").arg(&csv));
    assert_eq!(summary["records"], 1);
    let reasons: Vec<String> = dir
        .records("raw.rejected.jsonl")
        .iter()
        .map(|r| r["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons[0].contains("cc_num"), "{reasons:?}");
    assert!(reasons[1].contains("amt"), "{reasons:?}");
    assert!(reasons[2].contains("duplicate trans_num"), "{reasons:?}");
    let lines: Vec<String> = dir
        .records("raw.rejected.jsonl")
        .iter()
        .map(|r| {
            r["origin"]
                .as_str()
                .unwrap()
                .rsplit(' ')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(lines, ["3", "4", "5"], "each rejection names its CSV line");
}

#[test]
fn an_api_that_stays_down_fails_with_its_url() {
    let dir = RunDir::new();
    let url = format!("http://127.0.0.1:{}/current-transactions", free_port());
    let stderr = fails(
        dir.stage("extract")
            .args(["--api-url", &url, "--retries", "2"]),
        3,
    );
    assert!(
        stderr.contains(&url) && stderr.contains("payments API unavailable"),
        "{stderr}"
    );
    assert!(!dir.file("raw.jsonl").exists());
}

#[test]
fn a_past_interval_without_raw_data_is_skipped() {
    let dir = RunDir::new();
    let stderr = fails(
        dir.stage("extract")
            .args(["--interval-end", "2024-01-01T00:00:00Z"]),
        99,
    );
    assert!(stderr.contains("no raw file was captured"), "{stderr}");
    assert!(!dir.file("raw.jsonl").exists());
}

#[test]
fn a_killed_extract_leaves_no_raw_file_and_a_rerun_completes() {
    let sim = Simulator::start(&["--slow-rate", "1", "--slow-ms", "30000"]);
    let dir = RunDir::new();
    let mut child = dir
        .stage("extract")
        .args(["--api-url", &sim.url()])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!dir.file("raw.jsonl").exists(), "no raw file after a crash");
    drop(sim);
    let sim = Simulator::start(&[]);
    let summary = ok(dir.stage("extract").args([
        "--api-url",
        &sim.url(),
        "--max-records",
        "5",
        "--poll-interval-ms",
        "0",
    ]));
    assert_eq!(summary["records"], 5);
}

#[test]
fn a_killed_load_leaves_the_table_as_before() {
    let db = TestDb::new();
    let dir = scored_sample();
    // Hold a lock that blocks the load's upsert, kill the load while it waits, then release.
    let mut blocker = db.client();
    let mut lock = blocker.transaction().unwrap();
    lock.batch_execute("LOCK TABLE payments_scored IN SHARE MODE")
        .unwrap();
    let mut child = db
        .cmd("load")
        .arg("--run-dir")
        .arg(dir.path())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while db.count("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%payments_scored%'") == 0 {
        assert!(std::time::Instant::now() < deadline, "load never reached its upsert");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    lock.commit().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while db.count("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%payments_staging%' AND pid <> pg_backend_pid()") > 0 {
        assert!(std::time::Instant::now() < deadline, "the killed load's session did not end");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        db.count("SELECT count(*) FROM payments_scored"),
        0,
        "nothing of the killed load is visible"
    );
    let load = ok(db.cmd("load").arg("--run-dir").arg(dir.path()));
    assert_eq!(load["inserted"], 6185);
}

#[test]
fn sessions_side_by_side_load_what_one_transaction_loads() {
    let db = TestDb::new();
    let dir = scored_sample();
    let load = |connections: &str| {
        let summary = load_by(&db, &dir, "test-run", connections);
        ["inserted", "updated", "unchanged"].map(|k| summary[k].as_i64().unwrap())
    };
    assert_eq!(load("3"), [6185, 0, 0]);
    // One transaction over the same file finds every row as it would have written it.
    assert_eq!(load("1"), [0, 0, 6185]);
    // New scores: every row is updated, by whichever session holds its trans_num.
    ok(dir
        .stage("score")
        .arg("--model-dir")
        .arg(default_model())
        .args(["--threshold", "0.6"]));
    assert_eq!(load("2"), [0, 6185, 0]);
    assert_eq!(
        db.count("SELECT count(*) FROM payments_scored WHERE threshold = 0.6"),
        6185
    );
    let audit: String = db
        .client()
        .query_one(
            "SELECT details::text FROM pipeline_runs WHERE run_id = 'test-run' AND stage = 'load'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        serde_json::from_str::<Value>(&audit).unwrap(),
        serde_json::json!({"inserted": 0, "updated": 6185, "unchanged": 0, "conflicts": 0})
    );
}

#[test]
fn migrate_is_repeatable_and_safe_concurrently() {
    let db = TestDb::new();
    let children: Vec<_> = (0..2)
        .map(|_| {
            db.cmd("migrate")
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
    }
    let known = fraudctl::db::known_migrations().len() as i64;
    assert_eq!(
        db.count("SELECT count(*) FROM refinery_schema_history"),
        known
    );
    let again = ok(&mut db.cmd("migrate"));
    assert_eq!(again["applied"], serde_json::json!([]));
}

#[test]
fn a_fresh_database_is_created_and_the_time_zone_validated() {
    let db = TestDb::new();
    let url = format!("{}_new", db.url);
    let summary = ok(fraudctl()
        .args([
            "migrate",
            "--create-database",
            "--business-time-zone",
            "Europe/Paris",
        ])
        .env("FRAUDCTL_DATABASE_URL", &url));
    assert_eq!(summary["business_time_zone"], "Europe/Paris");
    let stderr = fails(
        fraudctl()
            .args(["migrate", "--business-time-zone", "Mars/Olympus"])
            .env("FRAUDCTL_DATABASE_URL", &url),
        5,
    );
    assert!(stderr.contains("Mars/Olympus"), "{stderr}");
    let mut admin = db.client();
    admin
        .batch_execute(&format!("DROP DATABASE {}_new WITH (FORCE)", db.name))
        .unwrap();
}

#[test]
fn a_password_on_the_command_line_is_refused() {
    let stderr = fails(
        fraudctl().args([
            "report",
            "--database-url",
            "postgres://u:hunter2@127.0.0.1:1/x",
        ]),
        5,
    );
    assert!(
        stderr.contains("FRAUDCTL_DATABASE_URL") && !stderr.contains("hunter2"),
        "{stderr}"
    );
}

#[test]
fn unusable_inputs_are_refused_with_exit_4() {
    let dir = RunDir::new();
    ok(dir
        .stage("extract")
        .arg("--from-csv")
        .arg(sample_csv())
        .args(["--max-records", "10"]));
    // An unknown stage-file version.
    let raw = std::fs::read_to_string(dir.file("raw.jsonl")).unwrap();
    std::fs::write(
        dir.file("raw.jsonl"),
        raw.replacen("\"version\":1", "\"version\":2", 1),
    )
    .unwrap();
    let stderr = fails(
        dir.stage("transform")
            .arg("--feature-spec")
            .arg(default_model().join("feature_spec.json")),
        4,
    );
    assert!(stderr.contains("version 2"), "{stderr}");
    // A truncated stage file.
    let mut lines: Vec<&str> = raw.lines().collect();
    lines.pop();
    std::fs::write(dir.file("raw.jsonl"), lines.join("\n") + "\n").unwrap();
    let stderr = fails(
        dir.stage("transform")
            .arg("--feature-spec")
            .arg(default_model().join("feature_spec.json")),
        4,
    );
    assert!(stderr.contains("truncated"), "{stderr}");
    // A feature spec naming a feature transform does not know.
    std::fs::write(dir.file("raw.jsonl"), &raw).unwrap();
    let spec = dir.file("spec.json");
    std::fs::write(&spec, r#"{"schema":"fraudctl.feature_spec","version":1,"name":"x","time_zone":"UTC","blocks":[{"type":"numeric","features":["amt","velocity_24h"]}]}"#).unwrap();
    let stderr = fails(dir.stage("transform").arg("--feature-spec").arg(&spec), 4);
    assert!(
        stderr.contains("velocity_24h") && stderr.contains("spec.json"),
        "{stderr}"
    );
    // A stage run before its input exists names the stage to run.
    let empty = RunDir::new();
    let stderr = fails(&mut empty.stage("score"), 4);
    assert!(stderr.contains("fraudctl transform"), "{stderr}");
}

#[test]
fn a_4xx_after_captured_records_keeps_them_and_says_why_polling_stopped() {
    for status in [404u16, 401] {
        let bodies: Vec<String> = (0..3)
            .map(|n| ApiRow::recorded(&format!("kept{n}")).body())
            .collect();
        let server = FixtureServer::sequence_then(bodies, status);
        let dir = RunDir::new();
        let out = util::run(dir.stage("extract").args([
            "--api-url",
            &server.url,
            "--poll-interval-ms",
            "0",
        ]));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{status}: {stderr}");
        let summary: Value =
            serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
        assert_eq!(summary["records"], 3, "{summary}");
        assert_eq!(summary["source_errors"], 1, "{summary}");
        assert!(
            summary["stopped_by"]
                .as_str()
                .is_some_and(|s| s.contains(&status.to_string())),
            "{summary}"
        );
        assert!(stderr.contains("keeping what was captured"), "{stderr}");
        assert_eq!(dir.records("raw.jsonl").len(), 3);
    }
    // Refused from the first request: nothing to keep, a configuration error.
    let server = FixtureServer::sequence_then(vec![], 404);
    let dir = RunDir::new();
    let stderr = fails(dir.stage("extract").args(["--api-url", &server.url]), 5);
    assert!(
        stderr.contains("404") && stderr.contains("FRAUDCTL_API_URL"),
        "{stderr}"
    );
    assert!(!dir.file("raw.jsonl").exists());
}

#[test]
fn a_stage_file_cut_in_its_last_line_is_refused_by_the_next_stage() {
    let db = TestDb::new();
    let dir = RunDir::new();
    features_from_sample(&dir, 50);
    ok(dir.stage("score").arg("--model-dir").arg(default_model()));
    let mut transform = dir.stage("transform");
    transform
        .arg("--feature-spec")
        .arg(default_model().join("feature_spec.json"));
    let mut score = dir.stage("score");
    score.arg("--model-dir").arg(default_model());
    let mut load = dir.stage("load");
    load.env("FRAUDCTL_DATABASE_URL", &db.url);
    for (file, mut next) in [
        ("raw.jsonl", transform),
        ("features.jsonl", score),
        ("scored.jsonl", load),
    ] {
        let path = dir.file(file);
        let whole = std::fs::read(&path).unwrap();
        // The last record without its closing brace and newline: the header's count still fits.
        std::fs::write(&path, &whole[..whole.len() - 2]).unwrap();
        let stderr = fails(&mut next, 4);
        assert!(
            stderr.contains("record 50 ends without its newline: the file is truncated"),
            "{file}: {stderr}"
        );
        std::fs::write(&path, &whole).unwrap();
    }
    assert_eq!(db.count("SELECT count(*) FROM payments_scored"), 0);
}

#[test]
fn settings_at_their_limits_are_refused_naming_the_setting_never_a_panic() {
    let dir = RunDir::new();
    let huge = "18446744073709551615";
    let cases: &[(&str, &str, &str)] = &[
        ("extract", "FRAUDCTL_MAX_SECONDS", huge),
        ("extract", "FRAUDCTL_POLL_INTERVAL_MS", huge),
        ("extract", "FRAUDCTL_REQUEST_TIMEOUT_SECS", huge),
        ("extract", "FRAUDCTL_API_RETRIES", huge),
        ("extract", "FRAUDCTL_API_MAX_BODY_BYTES", "0"),
        ("extract", "FRAUDCTL_MAX_LAG_SECS", huge),
        ("extract", "FRAUDCTL_MAX_RECORDS", "0"),
        ("extract", "FRAUDCTL_LOCK_TIMEOUT_SECS", huge),
        (
            "extract",
            "FRAUDCTL_API_URL",
            "127.0.0.1:18000/current-transactions",
        ),
        (
            "extract",
            "FRAUDCTL_API_URL",
            "ftp://127.0.0.1/current-transactions",
        ),
        ("extract", "FRAUDCTL_RUN_ID", ""),
        ("transform", "FRAUDCTL_RUN_ID", "run\u{1b}[2Jx"),
        (
            "extract",
            "FRAUDCTL_PAN_HASH_KEY",
            "abababababababababababababababababab",
        ),
        (
            "alert",
            "FRAUDCTL_REPORT_URL",
            "javascript:alert(document.cookie)",
        ),
        ("score", "FRAUDCTL_THRESHOLD", "NaN"),
        ("score", "FRAUDCTL_THRESHOLD", "1e400"),
        ("score", "FRAUDCTL_SAGEMAKER_MAX_ROWS", huge),
        ("score", "FRAUDCTL_SAGEMAKER_ATTEMPTS", "0"),
        ("score", "FRAUDCTL_SAGEMAKER_TIMEOUT_SECS", huge),
        ("load", "FRAUDCTL_LOAD_CONNECTIONS", "0"),
        ("alert", "FRAUDCTL_ALERT_MAX_AGE_HOURS", "4294967295"),
        ("alert", "FRAUDCTL_ALERT_MAX_EMAILS", "-1"),
        ("alert", "FRAUDCTL_SMTP_RETRIES", huge),
        ("serve-payments", "FRAUDCTL_SIM_ERROR_RATE", "NaN"),
        ("serve-payments", "FRAUDCTL_SIM_FRAUD_RATE", "2"),
        ("serve-payments", "FRAUDCTL_SIM_ROWS_PER_RESPONSE", huge),
        ("serve-payments", "FRAUDCTL_SIM_SLOW_MS", huge),
        ("serve-payments", "FRAUDCTL_SIM_THREADS", "0"),
    ];
    for (command, var, value) in cases {
        let mut cmd = fraudctl();
        cmd.arg(command).env(var, value);
        if *command != "serve-payments" {
            cmd.arg("--run-dir").arg(dir.path());
        }
        let stderr = fails(&mut cmd, 5);
        assert!(
            stderr.contains(var),
            "{command} with {var}={value}: {stderr}"
        );
    }
    // And on the command line: the flag is named.
    let stderr = fails(dir.stage("extract").args(["--max-seconds", huge]), 5);
    assert!(stderr.contains("--max-seconds"), "{stderr}");
}

/// The peak resident memory of a process (VmHWM), read from /proc while it runs; 0 once gone.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn a_huge_body_is_refused_unread_in_bounded_memory() {
    let huge = format!("\"{}\"", "9".repeat(50 << 20));
    let server = FixtureServer::sequence(vec![huge, ApiRow::recorded("after-huge").body()]);
    let dir = RunDir::new();
    let mut child = dir
        .stage("extract")
        .args([
            "--api-url",
            &server.url,
            "--retries",
            "0",
            "--poll-interval-ms",
            "0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        peak = peak.max(peak_rss_kib(child.id()));
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(child.wait().unwrap().success());
    assert!(
        peak > 0 && peak < 48 * 1024,
        "extract peaked at {peak} KiB for a 50 MB body"
    );
    let rejected = dir.records("raw.rejected.jsonl");
    assert_eq!(rejected.len(), 1);
    assert!(
        rejected[0]["reason"]
            .as_str()
            .unwrap()
            .contains("body larger than 1048576 bytes"),
        "{}",
        rejected[0]["reason"]
    );
    assert!(rejected[0]["body"].as_str().unwrap().chars().count() <= 4097);
    assert_eq!(
        dir.records("raw.jsonl").len(),
        1,
        "the next body is read as usual"
    );
}

/// The sample's header and the rows of one card with three payments within 24 hours (a fraud
/// burst), in time order.
fn a_burst_of_three() -> (String, [String; 3]) {
    let text = std::fs::read_to_string(sample_csv()).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().to_string();
    let mut by_card: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for line in lines {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(line.as_bytes());
        let record = reader.records().next().unwrap().unwrap();
        by_card
            .entry(record[2].to_string())
            .or_default()
            .push(line.to_string());
    }
    let time = |line: &str| {
        let record = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(line.as_bytes())
            .records()
            .next()
            .unwrap()
            .unwrap();
        chrono::NaiveDateTime::parse_from_str(&record[1], "%Y-%m-%d %H:%M:%S").unwrap()
    };
    for rows in by_card.values() {
        for w in rows.windows(3) {
            let (a, b, c) = (time(&w[0]), time(&w[1]), time(&w[2]));
            if a < b && b < c && c - a < chrono::Duration::hours(20) {
                return (header, [w[0].clone(), w[1].clone(), w[2].clone()]);
            }
        }
    }
    panic!("the sample has fraud bursts");
}

/// The `card_amt_sum_24h` feature of each record of a features file, by trans_num.
fn amt_sum_24h(dir: &RunDir) -> std::collections::HashMap<String, Value> {
    let columns = dir.header("features.jsonl")["meta"]["feature_spec"]["columns"].clone();
    let at = columns
        .as_array()
        .unwrap()
        .iter()
        .position(|c| c == "card_amt_sum_24h")
        .expect("the default spec reads the card's 24-hour spending");
    dir.records("features.jsonl")
        .iter()
        .map(|r| {
            (
                r["tx"]["trans_num"].as_str().unwrap().to_string(),
                r["features"][at].clone(),
            )
        })
        .collect()
}

#[test]
fn a_late_payment_never_changes_features_already_computed() {
    let (header, [first, late, last]) = a_burst_of_three();
    let db = TestDb::new();
    let csv_dir = tempfile::tempdir().unwrap();
    let run = |name: &str, rows: &[&String]| -> RunDir {
        let csv = csv_dir.path().join(format!("{name}.csv"));
        let lines: Vec<&str> = std::iter::once(header.as_str())
            .chain(rows.iter().map(|r| r.as_str()))
            .collect();
        std::fs::write(&csv, lines.join("\n")).unwrap();
        let dir = RunDir::new();
        ok(dir.stage("extract").arg("--from-csv").arg(&csv));
        ok(dir
            .stage("transform")
            .arg("--feature-spec")
            .arg(default_model().join("feature_spec.json"))
            .env("FRAUDCTL_DATABASE_URL", &db.url));
        ok(dir.stage("score").arg("--model-dir").arg(default_model()));
        ok(dir.stage("load").env("FRAUDCTL_DATABASE_URL", &db.url));
        dir
    };
    let early = run("early", &[&first, &last]);
    let before = std::fs::read_to_string(early.file("features.jsonl")).unwrap();
    let was = amt_sum_24h(&early);
    // The payment between them arrives in a later run: it sees the first (captured before it,
    // earlier in time), not the last (later in time).
    let late_run = run("late", &[&late]);
    let amount = |row: &str| -> f64 {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(row.as_bytes());
        reader.records().next().unwrap().unwrap()[5]
            .parse()
            .unwrap()
    };
    let seen = amt_sum_24h(&late_run);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen.values().next().unwrap().as_f64(), Some(amount(&first)));
    // Re-running transform on the early run, the late payment loaded since: the same records.
    ok(early
        .stage("transform")
        .arg("--feature-spec")
        .arg(default_model().join("feature_spec.json"))
        .env("FRAUDCTL_DATABASE_URL", &db.url));
    let after = std::fs::read_to_string(early.file("features.jsonl")).unwrap();
    assert_eq!(
        before.lines().skip(1).collect::<Vec<_>>(),
        after.lines().skip(1).collect::<Vec<_>>()
    );
    assert_eq!(amt_sum_24h(&early), was);
}

#[test]
fn card_history_needs_the_database_only_for_specs_that_read_it() {
    let down = format!("postgres://postgres@127.0.0.1:{}/fraud_db", free_port());
    let dir = RunDir::new();
    ok(dir
        .stage("extract")
        .arg("--from-csv")
        .arg(sample_csv())
        .args(["--max-records", "200"]));
    // The original project's spec reads no history: no database needed.
    let summary = ok(dir
        .stage("transform")
        .arg("--feature-spec")
        .arg(root().join("model/original/feature_spec.json"))
        .env("FRAUDCTL_DATABASE_URL", &down));
    assert_eq!(summary["records"], 200);
    assert!(summary.get("known_payments").is_none(), "{summary}");
    for file in ["features.jsonl", "features.rejected.jsonl"] {
        std::fs::remove_file(dir.file(file)).unwrap();
    }
    // The default spec does: with the database down, exit 3 and nothing written.
    let stderr = fails(
        dir.stage("transform")
            .arg("--feature-spec")
            .arg(default_model().join("feature_spec.json"))
            .env("FRAUDCTL_DATABASE_URL", &down),
        3,
    );
    assert!(stderr.contains("PostgreSQL unavailable"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("features"))
        .collect();
    assert!(left.is_empty(), "transform left {left:?}");
}

/// The scored records' reasons by trans_num (`None`: the record has no `reasons` key).
fn reasons_by_trans_num(dir: &RunDir) -> std::collections::HashMap<String, (bool, Option<Value>)> {
    dir.records("scored.jsonl")
        .into_iter()
        .map(|r| {
            let fraud = r["score"]["predicted_fraud"].as_bool().unwrap();
            let reasons = r["score"].get("reasons").cloned();
            (
                r["tx"]["trans_num"].as_str().unwrap().to_string(),
                (fraud, reasons),
            )
        })
        .collect()
}

#[test]
fn a_predicted_fraud_carries_its_reasons_into_the_database_and_a_legitimate_one_none() {
    let db = TestDb::new();
    let dir = RunDir::new();
    features_from_sample(&dir, 6185);
    ok(dir.stage("score").arg("--model-dir").arg(default_model()));
    let columns = dir.header("features.jsonl")["meta"]["feature_spec"]["columns"].clone();
    let scored = reasons_by_trans_num(&dir);
    let frauds = scored.values().filter(|(fraud, _)| *fraud).count();
    assert!(frauds > 0 && frauds < scored.len(), "{frauds} frauds");
    for (trans_num, (fraud, reasons)) in &scored {
        if !fraud {
            assert_eq!(
                reasons, &None,
                "{trans_num}: a legitimate payment has no reasons"
            );
            continue;
        }
        let list = reasons
            .as_ref()
            .and_then(Value::as_array)
            .expect("a fraud's reasons");
        assert!((1..=3).contains(&list.len()), "{trans_num}: {list:?}");
        for r in list {
            assert!(columns.as_array().unwrap().contains(&r["feature"]), "{r}");
            assert!(r["contribution"].as_f64().unwrap() > 0.0, "{r}");
            assert!(!r["text"].as_str().unwrap().is_empty(), "{r}");
        }
    }
    let load = ok(db.cmd("load").arg("--run-dir").arg(dir.path()));
    assert_eq!(load["inserted"], 6185);
    let mut client = db.client();
    for row in client
        .query(
            "SELECT trans_num, predicted_fraud, reasons::text FROM payments_scored",
            &[],
        )
        .unwrap()
    {
        let (trans_num, fraud): (String, bool) = (row.get(0), row.get(1));
        let stored: Option<Value> = row
            .get::<_, Option<String>>(2)
            .map(|t| serde_json::from_str(&t).unwrap());
        assert_eq!(fraud, scored[&trans_num].0);
        assert_eq!(
            stored, scored[&trans_num].1,
            "{trans_num}: the row holds the record's reasons"
        );
    }
    let again = ok(db.cmd("load").arg("--run-dir").arg(dir.path()));
    assert_eq!(
        again["unchanged"], 6185,
        "the same reasons leave the rows alone"
    );
}

/// stderr's lines, each parsed as a JSON object.
fn json_lines(stderr: &[u8]) -> Vec<serde_json::Map<String, Value>> {
    String::from_utf8_lossy(stderr)
        .lines()
        .map(|l| match serde_json::from_str(l) {
            Ok(Value::Object(event)) => event,
            _ => panic!("not a JSON object: {l:?}"),
        })
        .collect()
}

#[test]
fn json_logs_are_one_object_a_line_with_the_text_logs_fields() {
    let dir = RunDir::new();
    let csv = dir.file("input.csv");
    let text = std::fs::read_to_string(sample_csv()).unwrap();
    std::fs::write(&csv, text.lines().take(30).collect::<Vec<_>>().join("\n")).unwrap();
    let extract = |format: &str| {
        let mut cmd = RunDir::new().stage("extract");
        cmd.arg("--from-csv")
            .arg(&csv)
            .env("FRAUDCTL_LOG_FORMAT", format);
        let out = run(&mut cmd);
        assert!(out.status.success(), "{}", explain(&cmd, &out, "failed"));
        out.stderr
    };
    let events = json_lines(&extract("json"));
    let text = String::from_utf8(extract("text")).unwrap();
    assert_eq!(
        events.len(),
        text.lines().count(),
        "one line an event:\n{text}"
    );
    for (event, line) in events.iter().zip(text.lines()) {
        assert!(
            event["timestamp"].is_string() && event["level"] == "INFO",
            "{event:?}"
        );
        let message = event["message"].as_str().unwrap();
        assert!(line.contains(message), "{line:?} lacks {message:?}");
        for (field, value) in event
            .iter()
            .filter(|(k, _)| !["timestamp", "level", "message"].contains(&k.as_str()))
        {
            let shown = value
                .as_str()
                .map_or(value.to_string(), |s| format!("{s:?}"));
            assert!(
                line.contains(&format!("{field}={shown}")),
                "{line:?} lacks {field}={shown}"
            );
        }
    }
    assert!(events
        .iter()
        .any(|e| e["message"] == "started" && e["stage"] == "extract"));

    // The failure that ends a run is an event too, with its exit code.
    let mut load = dir.stage("load");
    load.env("FRAUDCTL_LOG_FORMAT", "json");
    let out = run(&mut load);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        explain(&load, &out, "exit 4")
    );
    let last = json_lines(&out.stderr).pop().unwrap();
    assert_eq!(
        (&last["level"], &last["exit_code"]),
        (&Value::from("ERROR"), &Value::from(4))
    );
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("scored.jsonl does not exist"),
        "{last:?}"
    );

    let stderr = fails(dir.stage("extract").env("FRAUDCTL_LOG_FORMAT", "yaml"), 5);
    assert!(
        stderr.contains("FRAUDCTL_LOG_FORMAT=\"yaml\" is not a log format: use text or json"),
        "{stderr}"
    );
}

#[test]
fn a_long_stage_logs_its_progress_and_a_short_one_nothing_extra() {
    let logs = |interval: Option<&str>| {
        let mut cmd = RunDir::new().stage("extract");
        cmd.arg("--from-csv").arg(sample_csv());
        if let Some(ms) = interval {
            cmd.env("FRAUDCTL_PROGRESS_INTERVAL_MS", ms);
        }
        let out = run(&mut cmd);
        assert!(out.status.success(), "{}", explain(&cmd, &out, "failed"));
        String::from_utf8(out.stderr).unwrap()
    };
    // Every millisecond: the sample takes longer than that, so it logs its progress.
    let progress: Vec<String> = logs(Some("1"))
        .lines()
        .filter(|l| l.contains(" progress "))
        .map(str::to_string)
        .collect();
    assert!(!progress.is_empty(), "no progress line");
    for line in &progress {
        assert!(
            line.contains("stage=\"extract\"")
                && line.contains(" records=")
                && line.contains(" rate="),
            "{line}"
        );
    }
    // The default (a line every 5 s): the sample is done before the first.
    assert!(!logs(None).contains(" progress "));
    assert!(!logs(Some("0")).contains(" progress "), "0: never");
}

/// A digest for a day the stack never saw (a first `make up` mails the morning's report of a day
/// before it existed) says so, and the digest DAG sends none: the report's `seen`.
#[test]
fn a_report_says_whether_the_pipeline_saw_its_day() {
    let db = TestDb::new();
    let report = |day: &str, format: &str| db.report(day, format);
    let seen = |day: &str| -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(&report(day, "json")).unwrap()["summary"]["seen"]
            .clone()
    };
    assert_eq!(seen("2026-11-29"), false, "an empty database saw no day");
    assert!(report("2026-11-29", "table").contains("the pipeline never saw this day"));
    // A payment stamped with the day but captured after it (a new stack's stream): not seen.
    let ok_insert = |sql: &str| db.client().batch_execute(sql).unwrap();
    ok_insert(
        "INSERT INTO payments_scored (trans_num, trans_time, cc_last4, cc_hash, merchant, category,
             amt, gender, city, state, city_pop, merch_lat, merch_long, fraud_probability,
             predicted_fraud, threshold, model_version, scorer, run_id, captured_at)
         VALUES ('t-late', '2026-11-28 12:00+00', '4242', 'h', 'm', 'c', 1, 'F', 'x', 'NY', 1,
                 0, 0, 0.1, false, 0.5, 'v', 'local', 'r', '2026-11-29 00:30+00')",
    );
    assert_eq!(seen("2026-11-28"), false, "captured after the day ended");
    assert_eq!(seen("2026-11-29"), true, "captured before the day ended");
    ok_insert("DELETE FROM payments_scored");
    db.client()
        .execute(
            "INSERT INTO pipeline_runs (run_id, stage, records, recorded_at)
             VALUES ('scheduled__2026-11-29T23:59', 'load', 0, '2026-11-29 23:59:00+00')",
            &[],
        )
        .unwrap();
    assert_eq!(
        seen("2026-11-28"),
        false,
        "a run recorded later saw no earlier day"
    );
    assert_eq!(
        seen("2026-11-29"),
        true,
        "a run before its end, even with no payment"
    );
    assert_eq!(
        seen("2026-11-30"),
        true,
        "a day after the stack's first run"
    );
    assert!(!report("2026-11-29", "table").contains("never saw"));
}
