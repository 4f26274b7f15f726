//! The card history and the reasons through the stages: point in time (a late payment never
//! changes features already computed), the database read only when a spec needs it, and a
//! predicted fraud's reasons stored with it.

use super::*;

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
