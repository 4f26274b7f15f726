//! A payments API that fails, stays down or refuses; stages killed half-way: nothing lost,
//! nothing duplicated, and a clear word on what happened.

use std::collections::HashSet;

use super::*;

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
