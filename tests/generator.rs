//! The synthetic payments of `serve-payments` (no --csv), as the stack sees them: served,
//! extracted, transformed (card history through PostgreSQL), scored by the default model and
//! loaded, three runs of 1,000. Fails when the generator drifts from the data set: the model
//! must score its payments as it scores the data set's, cards must recur and frauds come in
//! bursts; `--time-mode now` must serve each payment once it happened on the wall clock, stamped
//! then, and `--time-mode last-day` only move each payment to the same time of day within the
//! last 24 hours. (`scripts/generator_report.py` measures the same and how far the payments are
//! from the sample's.)

mod util;

use std::collections::HashMap;
use std::process::Command;

use util::*;

const RUNS: usize = 3;
const RUN_SIZE: &str = "1000";
const DAY_MS: i64 = 86_400_000;

/// `fraudctl STAGE` on `dir` as run `run`, against `db` (card history included).
fn stage(db: &TestDb, dir: &RunDir, name: &str, run: usize) -> Command {
    let mut cmd = db.cmd(name);
    cmd.arg("--run-dir")
        .arg(dir.path())
        .args(["--run-id", &format!("generator-{run}")]);
    cmd
}

fn extract(cmd: &mut Command, sim: &Simulator) {
    let summary = ok(cmd.args([
        "--api-url",
        &sim.url(),
        "--max-records",
        RUN_SIZE,
        "--poll-interval-ms",
        "0",
    ]));
    assert_eq!(summary["records"], 1000, "{summary}");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn the_default_model_finds_the_generated_frauds_in_bursts_on_recurring_cards() {
    let db = TestDb::new();
    // The default seed and options, at the generator's own clock (so that the figures do not
    // depend on the hour the test runs at).
    let sim = Simulator::start(&["--time-mode", "original"]);
    for run in 0..RUNS {
        let dir = RunDir::new();
        extract(&mut stage(&db, &dir, "extract", run), &sim);
        let spec = default_model().join("feature_spec.json");
        ok(stage(&db, &dir, "transform", run)
            .arg("--feature-spec")
            .arg(spec));
        ok(stage(&db, &dir, "score", run)
            .arg("--model-dir")
            .arg(default_model()));
        ok(&mut stage(&db, &dir, "load", run));
    }
    let count = |filter: &str| {
        db.count(&format!(
            "SELECT count(*) FROM payments_scored WHERE {filter}"
        ))
    };
    assert_eq!(count("true"), 3000);
    let frauds = count("is_fraud_label");
    let alerts = count("predicted_fraud");
    let caught = count("is_fraud_label AND predicted_fraud");
    let (precision, recall) = (
        caught as f64 / alerts.max(1) as f64,
        caught as f64 / frauds.max(1) as f64,
    );
    let mut client = db.client();
    let median_seen: f64 = client
        .query_one(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY n) FROM \
             (SELECT count(*) AS n FROM payments_scored GROUP BY cc_hash) cards",
            &[],
        )
        .unwrap()
        .get(0);
    let compromised =
        db.count("SELECT count(DISTINCT cc_hash) FROM payments_scored WHERE is_fraud_label");
    let per_card = frauds as f64 / compromised.max(1) as f64;
    println!(
        "frauds {frauds}, alerts {alerts}, caught {caught}: precision {precision:.3}, recall \
         {recall:.3}; median card seen {median_seen} times; {per_card:.2} frauds per compromised card"
    );
    // This stream (the default seed, what `make up` serves) reaches precision 0.959 and recall
    // 0.854 with default-v4 at its threshold (0.8); the assertions are the targets. Other
    // streams of 3,000 (scripts/generator_report.py, seeds 1-7) give precision 0.885-0.976 and
    // recall 0.742-0.962: with about seven bursts in 3,000 payments, the number of frauds, and
    // with it both figures, varies from stream to stream, so a refit of params.json is checked
    // with the report over several seeds, not by this stream alone. The share of legitimate
    // payments alerted varies less: 0.03-0.24 % (all eight pooled 0.14 %, precision 0.943).
    let false_alarm_rate = (alerts - caught) as f64 / (3000 - frauds) as f64;
    assert!(
        false_alarm_rate <= 0.005,
        "{false_alarm_rate:.4} of legitimate payments alerted"
    );
    assert!(
        precision >= 0.85,
        "precision {precision:.3} ({caught} of {alerts} alerts)"
    );
    assert!(
        recall >= 0.80,
        "recall {recall:.3} ({caught} of {frauds} frauds)"
    );
    assert!(
        median_seen >= 3.0,
        "the median card is seen {median_seen} times"
    );
    assert!(per_card >= 3.0, "{per_card:.2} frauds per compromised card");
}

#[test]
fn now_mode_stamps_each_payment_when_it_happens_and_serves_it_after() {
    let started = now_ms();
    // 50,000 cards a day: about 2 payments a second, against 10 requests a second for 4 s
    // (polling for a time, not a count: a slow start's backlog cannot end it in one request).
    let sim = Simulator::start(&[
        "--time-mode",
        "now",
        "--cards",
        "50000",
        "--rows-per-response",
        "100",
    ]);
    let dir = RunDir::new();
    let summary = ok(dir.stage("extract").args([
        "--api-url",
        &sim.url(),
        "--max-seconds",
        "4",
        "--poll-interval-ms",
        "100",
    ]));
    let finished = now_ms();
    assert!(summary["records"].as_u64().unwrap() >= 2, "{summary}");
    let mut last = started;
    for record in dir.records("raw.jsonl") {
        let stamp = record["trans_time_ms"].as_i64().unwrap();
        let captured = record["captured_at_ms"].as_i64().unwrap();
        assert!(
            last <= stamp && stamp <= captured && captured <= finished,
            "{record}: stamped {stamp}, captured {captured}, the previous stamp {last}, \
             the server started after {started}, the extract ended at {finished}"
        );
        last = stamp;
    }
    let stats = sim.stats();
    assert!(
        stats["empty"].as_u64().unwrap() > 0,
        "some requests came before the next payment happened: {stats}"
    );
}

#[test]
fn last_day_mode_serves_the_same_payments_at_their_time_of_day_within_the_last_day() {
    let original = Simulator::start(&["--seed", "7", "--time-mode", "original"]);
    let now = Simulator::start(&["--seed", "7", "--time-mode", "last-day"]);
    let (kept, stamped) = (RunDir::new(), RunDir::new());
    extract(&mut kept.stage("extract"), &original);
    let before = now_ms();
    extract(&mut stamped.stage("extract"), &now);
    let after = now_ms();

    let time = |r: &serde_json::Value| r["trans_time_ms"].as_i64().unwrap();
    let originals: HashMap<String, serde_json::Value> = kept
        .records("raw.jsonl")
        .into_iter()
        .map(|r| (r["trans_num"].as_str().unwrap().to_string(), r))
        .collect();
    let mut last_stamp: HashMap<String, i64> = HashMap::new();
    let mut cards_out_of_order = std::collections::HashSet::new();
    for record in stamped.records("raw.jsonl") {
        let trans_num = record["trans_num"].as_str().unwrap();
        let twin = &originals[trans_num];
        let (stamp, simulated) = (time(&record), time(twin));
        assert!(
            before - DAY_MS < stamp && stamp <= after,
            "{trans_num} stamped {stamp}, served between {before} and {after}"
        );
        assert_eq!(
            stamp.rem_euclid(DAY_MS),
            simulated.rem_euclid(DAY_MS),
            "{trans_num}"
        );
        let (mut a, mut b) = (record.clone(), twin.clone());
        for r in [&mut a, &mut b] {
            r["trans_time_ms"] = 0.into();
            r["captured_at_ms"] = 0.into();
        }
        assert_eq!(a, b, "only the stamp differs");
        let card = record["cc_hash"].as_str().unwrap().to_string();
        if last_stamp
            .insert(card.clone(), stamp)
            .is_some_and(|last| last > stamp)
        {
            cards_out_of_order.insert(card);
        }
    }
    println!(
        "{} of {} cards have a payment stamped before an earlier-served one",
        cards_out_of_order.len(),
        last_stamp.len()
    );
}
