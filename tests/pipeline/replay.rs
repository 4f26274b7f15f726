//! The sample and the API fixture through extract → transform → score → load into PostgreSQL:
//! the exact records, COPY and upsert writing the same rows, every stage idempotent, sessions
//! side by side.

use super::*;

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
