//! The `score` stage: the local XGBoost scorer and the SageMaker backend against an
//! AWS-compatible endpoint (moto in server mode behind an XGBoost-scoring proxy).

mod util;

use util::*;

fn probabilities(dir: &RunDir) -> Vec<f64> {
    dir.records("scored.jsonl")
        .iter()
        .map(|r| r["score"]["probability"].as_f64().unwrap())
        .collect()
}

#[test]
fn sagemaker_scores_equal_the_local_model_with_csv_in_feature_order() {
    let endpoint = SageMaker::start(0);
    let dir = RunDir::new();
    features_from_sample(&dir, 6185);
    ok(dir.stage("score").arg("--model-dir").arg(default_model()));
    let local = probabilities(&dir);
    let mut cmd = dir.stage("score");
    cmd.args(["--sagemaker-endpoint", SAGEMAKER_ENDPOINT]);
    with_aws(&mut cmd, &endpoint.url);
    let summary = ok(&mut cmd);
    assert_eq!(
        summary["model_version"], "sagemaker:fraud-xgb/AllTraffic",
        "the endpoint's version, not a constant"
    );
    assert_eq!(summary["fallback_records"], 0);
    let remote = probabilities(&dir);
    assert_eq!(remote.len(), 6185);
    for (i, (l, r)) in local.iter().zip(&remote).enumerate() {
        assert!((l - r).abs() < 1e-6, "row {i}: local {l} sagemaker {r}");
    }
    let requests = endpoint.requests();
    let columns = dir.header("features.jsonl")["meta"]["feature_spec"]["columns"]
        .as_array()
        .unwrap()
        .len();
    assert!(requests
        .iter()
        .all(|r| r["status"] == 200 && r["content_type"] == "text/csv" && r["columns"] == columns));
    assert_eq!(
        requests
            .iter()
            .map(|r| r["rows"].as_u64().unwrap())
            .sum::<u64>(),
        6185
    );
    assert!(requests.iter().all(|r| r["rows"].as_u64().unwrap() <= 1000));
}

#[test]
fn sagemaker_batches_stay_under_the_payload_limit() {
    let endpoint = SageMaker::start(0);
    let dir = RunDir::new();
    features_from_sample(&dir, 2000);
    let mut cmd = dir.stage("score");
    cmd.args([
        "--sagemaker-endpoint",
        SAGEMAKER_ENDPOINT,
        "--sagemaker-max-payload-bytes",
        "8000",
        "--sagemaker-concurrency",
        "3",
    ]);
    with_aws(&mut cmd, &endpoint.url);
    ok(&mut cmd);
    let requests = endpoint.requests();
    assert!(
        requests.len() > 10,
        "small payload limit gives many batches: {}",
        requests.len()
    );
    assert!(
        requests
            .iter()
            .all(|r| r["bytes"].as_u64().unwrap() <= 8000),
        "{requests:?}"
    );
    assert_eq!(
        requests
            .iter()
            .map(|r| r["rows"].as_u64().unwrap())
            .sum::<u64>(),
        2000
    );
    // Results are written in input order whatever the completion order.
    let raw: Vec<_> = dir
        .records("raw.jsonl")
        .iter()
        .map(|r| r["trans_num"].clone())
        .collect();
    let scored: Vec<_> = dir
        .records("scored.jsonl")
        .iter()
        .map(|r| r["tx"]["trans_num"].clone())
        .collect();
    assert_eq!(raw, scored);
}

#[test]
fn sagemaker_throttling_is_retried() {
    let endpoint = SageMaker::start(3);
    let dir = RunDir::new();
    features_from_sample(&dir, 50);
    let mut cmd = dir.stage("score");
    cmd.args([
        "--sagemaker-endpoint",
        SAGEMAKER_ENDPOINT,
        "--sagemaker-attempts",
        "5",
    ]);
    with_aws(&mut cmd, &endpoint.url);
    let summary = ok(&mut cmd);
    assert_eq!(
        summary["fallback_records"], 0,
        "throttling is retried, not given up"
    );
    let statuses: Vec<u64> = endpoint
        .requests()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, vec![429, 429, 429, 200]);
}

#[test]
fn a_missing_endpoint_is_reported_clearly() {
    let endpoint = SageMaker::start(0);
    let dir = RunDir::new();
    features_from_sample(&dir, 10);
    let mut cmd = dir.stage("score");
    cmd.args(["--sagemaker-endpoint", "no-such-endpoint"]);
    with_aws(&mut cmd, &endpoint.url);
    let stderr = fails(&mut cmd, 5);
    assert!(
        stderr.contains("no-such-endpoint") && stderr.contains("not found"),
        "{stderr}"
    );
    assert!(!dir.file("scored.jsonl").exists());
}

#[test]
fn an_unreachable_endpoint_falls_back_to_the_local_model_and_marks_rows() {
    let db = TestDb::new();
    let dir = RunDir::new();
    features_from_sample(&dir, 100);
    let closed = format!("http://127.0.0.1:{}", free_port());
    let mut none = dir.stage("score");
    none.args([
        "--sagemaker-endpoint",
        SAGEMAKER_ENDPOINT,
        "--sagemaker-attempts",
        "2",
        "--fallback",
        "none",
    ]);
    with_aws(&mut none, &closed);
    let stderr = fails(&mut none, 3);
    assert!(
        stderr.contains("SageMaker endpoint unavailable"),
        "{stderr}"
    );

    let mut cmd = dir.stage("score");
    cmd.args([
        "--sagemaker-endpoint",
        SAGEMAKER_ENDPOINT,
        "--sagemaker-attempts",
        "2",
    ]);
    with_aws(&mut cmd, &closed);
    let summary = ok(&mut cmd);
    assert_eq!(summary["fallback_records"], 100);
    let records = dir.records("scored.jsonl");
    assert!(records
        .iter()
        .all(|r| r["score"]["scorer"] == "local-fallback" && r["score"]["needs_rescore"] == true));
    ok(db.cmd("load").arg("--run-dir").arg(dir.path()));
    assert_eq!(
        db.count("SELECT count(*) FROM payments_scored WHERE needs_rescore"),
        100
    );
    // Once the endpoint answers again, re-scoring the run clears the mark.
    let endpoint = SageMaker::start(0);
    let mut again = dir.stage("score");
    again.args(["--sagemaker-endpoint", SAGEMAKER_ENDPOINT]);
    with_aws(&mut again, &endpoint.url);
    ok(&mut again);
    let load = ok(db.cmd("load").arg("--run-dir").arg(dir.path()));
    assert_eq!(load["updated"], 100);
    assert_eq!(
        db.count("SELECT count(*) FROM payments_scored WHERE needs_rescore"),
        0
    );
}

#[test]
fn the_local_model_refuses_features_of_another_spec() {
    let dir = RunDir::new();
    ok(dir
        .stage("extract")
        .arg("--from-csv")
        .arg(sample_csv())
        .args(["--max-records", "10"]));
    ok(dir
        .stage("transform")
        .arg("--feature-spec")
        .arg(root().join("model/original/feature_spec.json")));
    let stderr = fails(
        dir.stage("score").arg("--model-dir").arg(default_model()),
        4,
    );
    assert!(
        stderr.contains("re-run `fraudctl transform --feature-spec"),
        "{stderr}"
    );
}
