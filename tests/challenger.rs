//! A challenger model in shadow (docs/rules.md, "A challenger model") through the pipeline on the
//! sample: transform computes the challenger's own features (its spec reads card history the
//! model's does not) with the same definitions as a transform for it alone; score stores its
//! probability beside the model's, the same the challenger gives scoring alone; no email comes
//! from it; the database's comparison and the digest count what the rows hold.

mod util;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use util::*;

fn challenger_model() -> PathBuf {
    root().join("model/challenger")
}

/// The challenger's directory with another threshold (so that it predicts frauds the model
/// does not, which must still not be emailed).
fn challenger_with_threshold(threshold: f64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in ["model.json", "feature_spec.json"] {
        std::fs::copy(challenger_model().join(file), dir.path().join(file)).unwrap();
    }
    std::fs::write(
        dir.path().join("threshold.json"),
        format!(r#"{{"threshold": {threshold}}}"#),
    )
    .unwrap();
    dir
}

/// Each record's `field` by its trans_num.
fn by_trans_num(records: &[serde_json::Value], field: &str) -> HashMap<String, serde_json::Value> {
    records
        .iter()
        .map(|r| {
            let pointer = format!("/{}", field.replace('.', "/"));
            (
                r["tx"]["trans_num"].as_str().unwrap().to_string(),
                r.pointer(&pointer).cloned().unwrap_or_default(),
            )
        })
        .collect()
}

/// A run directory holding `raw`'s raw.jsonl, transformed for `spec` alone and scored by
/// `model` alone: what the challenger would make of the batch as the champion.
fn alone(raw: &Path, model: &Path) -> RunDir {
    let dir = RunDir::new();
    std::fs::copy(raw.join("raw.jsonl"), dir.file("raw.jsonl")).unwrap();
    ok(dir
        .stage("transform")
        .arg("--feature-spec")
        .arg(challenger_model().join("feature_spec.json")));
    ok(dir.stage("score").arg("--model-dir").arg(model));
    dir
}

#[test]
fn a_challenger_in_shadow_is_stored_compared_and_never_emailed() {
    let db = TestDb::new();
    let dir = extracted_sample(3600);
    let challenger = challenger_with_threshold(0.3);
    let with_challenger = |stage: &str| {
        let mut cmd = dir.stage(stage);
        cmd.arg("--challenger-model-dir").arg(challenger.path());
        cmd
    };
    ok(with_challenger("transform")
        .arg("--feature-spec")
        .arg(default_model().join("feature_spec.json")));
    let header = dir.header("features.jsonl");
    assert_eq!(
        header["meta"]["challenger_feature_spec"]["name"], "challenger-v1",
        "{header}"
    );

    // Its features are what a transform for its spec alone computes.
    let solo = alone(dir.path(), challenger.path());
    let own = by_trans_num(&dir.records("features.jsonl"), "challenger_features");
    let expected = by_trans_num(&solo.records("features.jsonl"), "features");
    assert_eq!(own.len(), 3600);
    assert_eq!(own, expected);

    // Scored: the model's decisions as without a challenger, the challenger's probabilities as
    // it gives them alone.
    ok(with_challenger("score")
        .arg("--model-dir")
        .arg(default_model()));
    let scored = dir.records("scored.jsonl");
    let solo_scored = by_trans_num(&solo.records("scored.jsonl"), "score.probability");
    let shadow = by_trans_num(&scored, "score.challenger.probability");
    assert_eq!(shadow, solo_scored);
    let champion_only = RunDir::new();
    std::fs::copy(
        dir.file("features.jsonl"),
        champion_only.file("features.jsonl"),
    )
    .unwrap();
    ok(champion_only
        .stage("score")
        .arg("--model-dir")
        .arg(default_model()));
    assert_eq!(
        by_trans_num(&scored, "score.predicted_fraud"),
        by_trans_num(
            &champion_only.records("scored.jsonl"),
            "score.predicted_fraud"
        )
    );

    ok(db
        .cmd("load")
        .arg("--run-dir")
        .arg(dir.path())
        .args(["--run-id", "test-run"]));
    let challenger_only = db.count(
        "SELECT count(*) FROM payments_scored WHERE challenger_predicted_fraud AND NOT predicted_fraud",
    );
    assert!(
        challenger_only > 0,
        "the challenger at 0.3 predicts frauds the model does not"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM payments_scored WHERE challenger_model_version LIKE 'challenger-v1@%'"),
        3600
    );

    // Emailed: the model's frauds only.
    let sink = SmtpSink::start(0);
    ok(db
        .cmd("alert")
        .arg("--run-dir")
        .arg(dir.path())
        .args(["--smtp-url", &sink.url(), "--to", "analysts@example.test"])
        .args(["--smtp-retries", "0"])
        .env("FRAUDCTL_ALERT_MAX_AGE_HOURS", "1000000"));
    assert_eq!(
        db.count("SELECT count(*) FROM fraud_alerts WHERE status = 'sent'"),
        db.count("SELECT count(*) FROM payments_scored WHERE predicted_fraud")
    );
    let mail = sink.decoded_messages().join("\n");
    let shadow_frauds: Vec<String> = db
        .client()
        .query(
            "SELECT trans_num FROM payments_scored WHERE challenger_predicted_fraud AND NOT predicted_fraud",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(shadow_frauds.iter().all(|t| !mail.contains(t.as_str())));

    the_comparison_counts_the_rows(&db);
}

/// `challenger_comparison` and the digest against counts of the rows, over the sample's days.
fn the_comparison_counts_the_rows(db: &TestDb) {
    let mut client = db.client();
    let (from, to): (chrono::NaiveDate, chrono::NaiveDate) = {
        let r = client
            .query_one(
                "SELECT min(trans_time AT TIME ZONE 'UTC')::date, max(trans_time AT TIME ZONE 'UTC')::date
                 FROM payments_scored",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    let c = client
        .query_one("SELECT * FROM challenger_comparison($1, $2)", &[&from, &to])
        .unwrap();
    let hand = |condition: &str| {
        db.count(&format!(
            "SELECT count(*) FROM payments_scored WHERE {condition}"
        ))
    };
    let champion = "fraud_probability >= threshold";
    let challenger = "challenger_predicted_fraud";
    assert_eq!(c.get::<_, i64>("payments"), 3600);
    assert_eq!(c.get::<_, i64>("champion_alerts"), hand(champion));
    assert_eq!(c.get::<_, i64>("challenger_alerts"), hand(challenger));
    let differ = hand(&format!("({champion}) <> {challenger}"));
    let agreement: f64 = c.get("agreement");
    assert!((agreement - (3600 - differ) as f64 / 3600.0).abs() < 1e-12);
    assert_eq!(
        c.get::<_, i64>("challenger_true_pos"),
        hand(&format!("{challenger} AND is_fraud_label"))
    );
    assert_eq!(
        c.get::<_, i64>("champion_false_neg"),
        hand(&format!("NOT ({champion}) AND is_fraud_label"))
    );

    // The digest of the sample's last day says the same of that day.
    let day = to.to_string();
    let report: serde_json::Value = serde_json::from_str(&db.report(&day, "json")).unwrap();
    let of_day = &report["summary"]["challengers"][0];
    assert_eq!(of_day["period"], "day");
    let day_alerts = hand(&format!(
        "{challenger} AND (trans_time AT TIME ZONE 'UTC')::date = '{day}'"
    ));
    assert_eq!(of_day["challenger_model"]["alerts"], day_alerts);
    let table = db.report(&day, "table");
    assert!(
        table.contains("champion and challenger") && table.contains("challenger-v1@"),
        "{table}"
    );
}

#[test]
fn a_challenger_without_its_features_is_refused_naming_the_setting() {
    // features.jsonl of the model's spec only (no --challenger-model-dir at transform).
    let dir = extracted_sample(100);
    ok(dir
        .stage("transform")
        .arg("--feature-spec")
        .arg(default_model().join("feature_spec.json")));
    let says = fails(
        dir.stage("score")
            .arg("--model-dir")
            .arg(default_model())
            .arg("--challenger-model-dir")
            .arg(challenger_model()),
        4,
    );
    assert!(
        says.contains("holds no features of the challenger's spec challenger-v1")
            && says.contains("--challenger-model-dir / FRAUDCTL_CHALLENGER_MODEL_DIR"),
        "{says}"
    );
    // A challenger with the model's own spec reads the model's features: no transform needed.
    let same_spec = tempfile::tempdir().unwrap();
    for file in ["model.json", "feature_spec.json"] {
        std::fs::copy(default_model().join(file), same_spec.path().join(file)).unwrap();
    }
    ok(dir
        .stage("score")
        .arg("--model-dir")
        .arg(default_model())
        .arg("--challenger-model-dir")
        .arg(same_spec.path()));
    for r in dir.records("scored.jsonl") {
        // The same model at the default threshold: its probability is the model's.
        assert_eq!(
            r["score"]["challenger"]["probability"],
            r["score"]["probability"]
        );
        assert_eq!(r["score"]["challenger"]["threshold"], 0.5);
    }
}
