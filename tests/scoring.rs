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
    // The fallback is the model that scored them: its frauds have their reasons.
    let frauds: Vec<_> = records
        .iter()
        .filter(|r| r["score"]["predicted_fraud"] == true)
        .collect();
    assert!(frauds.iter().all(|r| r["score"]["reasons"].is_array()));
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
    let dir = transformed("10", &root().join("model/original/feature_spec.json"));
    let stderr = fails(
        dir.stage("score").arg("--model-dir").arg(default_model()),
        4,
    );
    assert!(
        stderr.contains("re-run `fraudctl transform --feature-spec"),
        "{stderr}"
    );
}

/// A run directory with the sample's first `records` extracted and transformed with `spec`.
fn transformed(records: &str, spec: &std::path::Path) -> RunDir {
    let dir = RunDir::new();
    ok(dir
        .stage("extract")
        .arg("--from-csv")
        .arg(sample_csv())
        .args(["--max-records", records]));
    ok(dir.stage("transform").arg("--feature-spec").arg(spec));
    dir
}

/// A copy of the default model whose base_score differs: same spec, other probabilities.
fn another_model() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let spec = default_model().join("feature_spec.json");
    std::fs::copy(spec, dir.path().join("feature_spec.json")).unwrap();
    let text = std::fs::read_to_string(default_model().join("model.json")).unwrap();
    let mut model: serde_json::Value = serde_json::from_str(&text).unwrap();
    model["learner"]["learner_model_param"]["base_score"] = "[3E-1]".into();
    std::fs::write(dir.path().join("model.json"), model.to_string()).unwrap();
    dir
}

/// Each predicted fraud's `score` object, by trans_num; asserts the others have no reasons.
fn frauds_scores(dir: &RunDir) -> std::collections::HashMap<String, serde_json::Value> {
    let mut frauds = std::collections::HashMap::new();
    for r in dir.records("scored.jsonl") {
        let score = &r["score"];
        if score["predicted_fraud"] == true {
            frauds.insert(r["tx"]["trans_num"].as_str().unwrap().into(), score.clone());
        } else {
            assert!(score.get("reasons").is_none(), "{score}");
        }
    }
    assert!(!frauds.is_empty());
    frauds
}

#[test]
fn sagemaker_frauds_get_reasons_from_the_same_local_model_else_say_why() {
    let endpoint = SageMaker::start(0);
    let dir = RunDir::new();
    features_from_sample(&dir, 6185);
    ok(dir.stage("score").arg("--model-dir").arg(default_model()));
    let local = frauds_scores(&dir);
    let sagemaker = |extra: &[&str], model_dir: &std::path::Path| {
        let mut cmd = dir.stage("score");
        cmd.args(["--sagemaker-endpoint", SAGEMAKER_ENDPOINT])
            .args(extra)
            .arg("--model-dir")
            .arg(model_dir);
        with_aws(&mut cmd, &endpoint.url);
        ok(&mut cmd);
        frauds_scores(&dir)
    };
    // The local fallback is the endpoint's model: the same reasons as the local scorer's.
    let same = sagemaker(&[], &default_model());
    assert_eq!(same.len(), local.len());
    for (trans_num, score) in &same {
        assert_eq!(score["scorer"], "sagemaker");
        assert_eq!(score["reasons"], local[trans_num]["reasons"], "{trans_num}");
        assert!(score.get("reasons_unavailable").is_none(), "{score}");
    }
    let unavailable = |frauds: &std::collections::HashMap<String, serde_json::Value>, why: &str| {
        for score in frauds.values() {
            assert!(score["reasons"].is_null(), "{score}");
            let said = score["reasons_unavailable"].as_str().unwrap();
            assert!(said.contains(why), "{said}");
        }
    };
    unavailable(
        &sagemaker(&["--fallback", "none"], &default_model()),
        "--fallback none",
    );
    let other = another_model();
    unavailable(
        &sagemaker(&[], other.path()),
        "the endpoint serves another model",
    );
}

#[test]
fn the_threshold_is_the_model_directorys_unless_given() {
    let dir = transformed("300", &default_model().join("feature_spec.json"));
    let file = std::fs::read_to_string(default_model().join("threshold.json")).unwrap();
    let own = serde_json::from_str::<serde_json::Value>(&file).unwrap()["threshold"]
        .as_f64()
        .unwrap();
    assert_ne!(
        own, 0.5,
        "the default model's own threshold, not the fallback"
    );
    let without_file = another_model();
    for (model, given, expected) in [
        (default_model(), None, own),
        (without_file.path().to_path_buf(), None, 0.5),
        (default_model(), Some("0.3"), 0.3),
    ] {
        let mut score = dir.stage("score");
        score.arg("--model-dir").arg(&model);
        if let Some(t) = given {
            score.args(["--threshold", t]);
        }
        ok(&mut score);
        assert_eq!(
            dir.header("scored.jsonl")["meta"]["threshold"],
            expected,
            "{model:?} {given:?}"
        );
        for r in dir.records("scored.jsonl") {
            let score = &r["score"];
            let p = score["probability"].as_f64().unwrap();
            assert_eq!(score["threshold"], expected);
            assert_eq!(score["predicted_fraud"], p >= expected, "{score}");
        }
    }
}

/// The live path scores a payment in a micro-batch of a few, the DAG in its minute of
/// thousands: the same features must give the same reasons, to the last bit, or the DAG's
/// reconciliation rewrites every predicted fraud it re-scores.
#[test]
fn a_payments_reasons_do_not_depend_on_the_size_of_its_batch() {
    let (minute, micro) = (RunDir::new(), RunDir::new());
    features_from_sample(&minute, 6185);
    features_from_sample(&micro, 2000);
    for dir in [&minute, &micro] {
        ok(dir.stage("score").arg("--model-dir").arg(default_model()));
    }
    let features = |dir: &RunDir| -> std::collections::HashMap<String, serde_json::Value> {
        dir.records("features.jsonl")
            .into_iter()
            .map(|r| {
                (
                    r["tx"]["trans_num"].as_str().unwrap().into(),
                    r["features"].clone(),
                )
            })
            .collect()
    };
    let (minute_features, micro_features) = (features(&minute), features(&micro));
    let minute_frauds = frauds_scores(&minute);
    let mut compared = 0;
    for (trans_num, score) in frauds_scores(&micro) {
        if micro_features[&trans_num] == minute_features[&trans_num] {
            assert_eq!(score, minute_frauds[&trans_num], "{trans_num}");
            compared += 1;
        }
    }
    assert!(
        compared > 0,
        "no predicted fraud with the same features in both batches"
    );
}
