//! Analysts' verdicts in the morning digest (`fraudctl report`), against a real PostgreSQL:
//! verdicts recorded through `record_alert_verdict` with tokens issued by `fraudctl::verdict`.

mod util;

use chrono::{DateTime, Duration, Utc};
use fraudctl::verdict::{self, Verdict, VerdictArgs, VerdictKey};
use util::*;

const DAY: &str = "2026-03-09";

fn at(hour: u32, minute: u32) -> DateTime<Utc> {
    format!("{DAY}T{hour:02}:{minute:02}:00Z").parse().unwrap()
}

/// A predicted fraud of DAY whose alert was sent at 10:00.
fn alerted_fraud(db: &TestDb, trans_num: &str, minute: u32) {
    let mut client = db.client();
    client
        .execute(
            "INSERT INTO payments_scored (trans_num, trans_time, cc_last4, cc_hash, merchant, category,
                 amt, gender, city, state, city_pop, merch_lat, merch_long, fraud_probability,
                 predicted_fraud, threshold, model_version, scorer, run_id)
             VALUES ($1, $2, '4242', md5($1), 'fraud_Shop', 'shopping_net', 120.5, 'F', 'Utica',
                     'NY', 1000, 43.1, -75.2, 0.91, true, 0.5, 'test-model', 'local', 'test-run')",
            &[&trans_num, &at(9, minute)],
        )
        .unwrap();
    client
        .execute(
            "INSERT INTO fraud_alerts (trans_num, status, message_id, recipients, run_id, recorded_at)
             VALUES ($1, 'sent', $1, 'analysts@example.test', 'test-run', $2)",
            &[&trans_num, &at(10, 0)],
        )
        .unwrap();
}

/// Records `verdict` through the database function with a token the library issued, then dates
/// it `minutes` after the alert (the function stamps now()).
fn give(db: &TestDb, key: &VerdictKey, trans_num: &str, verdict: Verdict, minutes: i64) {
    let link = verdict::link(
        "http://dash.example",
        key,
        trans_num,
        verdict,
        Utc::now() + Duration::hours(1),
    )
    .unwrap();
    let token = link.split_once("?verdict=").unwrap().1;
    assert_eq!(
        verdict::verify(key, token, Utc::now()).unwrap().verdict,
        verdict
    );
    let mut client = db.client();
    let status: String = client
        .query_one("SELECT record_alert_verdict($1)", &[&token])
        .unwrap()
        .get(0);
    assert_eq!(status, "recorded");
    let again: String = client
        .query_one("SELECT record_alert_verdict($1)", &[&token])
        .unwrap()
        .get(0);
    assert_eq!(again, "already_used");
    client
        .execute(
            "UPDATE alert_verdicts SET recorded_at = $2
             WHERE id = (SELECT max(id) FROM alert_verdicts WHERE trans_num = $1)",
            &[&trans_num, &(at(10, 0) + Duration::minutes(minutes))],
        )
        .unwrap();
}

fn report(db: &TestDb, format: &str) -> String {
    let out = util::run(db.cmd("report").args(["--day", DAY, "--format", format]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_digest_shows_the_days_verdict_figures_and_each_frauds_verdict() {
    let db = TestDb::new();
    let key = VerdictKey::new(b"integration-test-verdict-key-0123456789").unwrap();
    for (i, t) in ["t-a", "t-b", "t-c", "t-d"].iter().enumerate() {
        alerted_fraud(&db, t, i as u32);
    }
    give(&db, &key, "t-a", Verdict::Fraud, 10);
    give(&db, &key, "t-b", Verdict::NotFraud, 30);
    give(&db, &key, "t-b", Verdict::Fraud, 90); // supersedes; time to verdict counts the first
    give(&db, &key, "t-c", Verdict::NotFraud, 50);

    let json: serde_json::Value = serde_json::from_str(&report(&db, "json")).unwrap();
    let v = &json["summary"]["verdicts"];
    assert_eq!(v["given"], 3);
    assert_eq!(v["confirmed_frauds"], 2);
    assert_eq!(v["pending"], 1);
    assert!(
        (v["confirmed_precision"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9,
        "{v}"
    );
    assert!(
        (v["median_minutes_to_verdict"].as_f64().unwrap() - 30.0).abs() < 1e-6,
        "{v}"
    );
    let verdicts: Vec<Option<&str>> = json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["verdict"].as_str())
        .collect();
    assert_eq!(
        verdicts,
        [Some("fraud"), Some("fraud"), Some("not_fraud"), None]
    );

    let table = report(&db, "table");
    assert!(
        table.contains("analyst verdicts  3 given (2 confirmed fraud), 1 pending; analyst-confirmed precision 66.7%; median time to verdict 30 min"),
        "{table}"
    );
    let cells: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with(DAY))
        .map(|l| l.rsplit("  ").next().unwrap())
        .collect();
    assert_eq!(cells, ["fraud", "fraud", "not fraud", "pending"], "{table}");
    let csv = report(&db, "csv");
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .ends_with(",alert_status,verdict"),
        "{csv}"
    );
}

#[test]
fn a_day_without_verdicts_says_so_and_the_ttl_is_bounded() {
    let db = TestDb::new();
    alerted_fraud(&db, "t-a", 0);
    let table = report(&db, "table");
    assert!(
        table.contains("0 given (0 confirmed fraud), 1 pending; analyst-confirmed precision -; median time to verdict -"),
        "{table}"
    );
    let args = VerdictArgs {
        verdict_ttl_hours: 168,
    };
    assert_eq!(args.expires_at(at(0, 0)), at(0, 0) + Duration::days(7));
}
