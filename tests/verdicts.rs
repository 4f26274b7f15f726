//! Analysts' verdicts in the morning digest (`fraudctl report`), against a real PostgreSQL:
//! verdicts recorded through `record_alert_verdict` with tokens issued by `fraudctl::verdict`;
//! which tokens it accepts, and its notes stored with card numbers masked (`mask_card_numbers`).

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
    alerted_fraud_at(db, trans_num, minute, at(10, 0));
}

/// A predicted fraud of DAY whose alert was sent at `sent`.
fn alerted_fraud_at(db: &TestDb, trans_num: &str, minute: u32, sent: DateTime<Utc>) {
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
            &[&trans_num, &sent],
        )
        .unwrap();
}

/// A token for `verdict` on `trans_num`, valid for an hour, and its links as the alert stage
/// registers them when `issued`.
fn token(db: &TestDb, key: &VerdictKey, trans_num: &str, verdict: Verdict, issued: bool) -> String {
    let links = VerdictArgs {
        verdict_ttl_hours: 1,
    }
    .links(key, trans_num, Utc::now())
    .unwrap();
    if issued {
        fraudctl::alert::register_tokens(&mut db.client(), std::slice::from_ref(&links)).unwrap();
    }
    let token = links
        .tokens()
        .iter()
        .find(|(v, _)| *v == verdict)
        .unwrap()
        .1;
    assert_eq!(
        verdict::verify(key, token, Utc::now()).unwrap().verdict,
        verdict
    );
    token.to_string()
}

fn record(db: &TestDb, token: &str) -> String {
    db.client()
        .query_one("SELECT record_alert_verdict($1)", &[&token])
        .unwrap()
        .get(0)
}

fn record_with_note(db: &TestDb, token: &str, note: &str) -> String {
    db.client()
        .query_one("SELECT record_alert_verdict($1, $2)", &[&token, &note])
        .unwrap()
        .get(0)
}

/// A token for `verdict` on `trans_num` expiring at `expires_at`, registered by nobody.
fn unregistered(
    key: &VerdictKey,
    trans_num: &str,
    verdict: Verdict,
    expires_at: DateTime<Utc>,
) -> String {
    verdict::token(
        key,
        &verdict::Claim::new(trans_num, verdict, expires_at).unwrap(),
    )
}

/// Dates the start of the token registry `ago` back (as on a deployment upgraded across V14
/// that long ago); returns it.
fn registry_started(db: &TestDb, ago: Duration) -> DateTime<Utc> {
    let since = Utc::now() - ago;
    db.client()
        .execute(
            "UPDATE fraudctl_settings SET value = $1::timestamptz::text
             WHERE key = 'verdict_token_registry_since'",
            &[&since],
        )
        .unwrap();
    since
}

/// Records `verdict` through the database function with a token the alert stage issued, then
/// dates it `minutes` after the alert (the function stamps now()).
fn give(db: &TestDb, key: &VerdictKey, trans_num: &str, verdict: Verdict, minutes: i64) {
    let token = token(db, key, trans_num, verdict, true);
    assert_eq!(record(db, &token), "recorded");
    assert_eq!(record(db, &token), "already_used");
    let mut client = db.client();
    client
        .execute(
            "UPDATE alert_verdicts SET recorded_at = $2
             WHERE id = (SELECT max(id) FROM alert_verdicts WHERE trans_num = $1)",
            &[&trans_num, &(at(10, 0) + Duration::minutes(minutes))],
        )
        .unwrap();
}

fn report(db: &TestDb, format: &str) -> String {
    db.report(DAY, format)
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

#[test]
fn only_tokens_the_alert_stage_issued_record_a_verdict() {
    let db = TestDb::new();
    let key = VerdictKey::new(b"integration-test-verdict-key-0123456789").unwrap();
    alerted_fraud_at(&db, "t-new", 0, Utc::now());
    // Signed with the right key, but never in an email: what a holder of the dashboard's
    // credentials (or of the key alone) could make.
    let forged = token(&db, &key, "t-new", Verdict::NotFraud, false);
    assert_eq!(record(&db, &forged), "unknown_token");
    let written: i64 = db
        .client()
        .query_one("SELECT count(*) FROM alert_verdicts", &[])
        .unwrap()
        .get(0);
    assert_eq!(written, 0, "an unknown token writes nothing");
    let issued = token(&db, &key, "t-new", Verdict::NotFraud, true);
    assert_eq!(record(&db, &issued), "recorded");

    // An alert sent before the registry existed (V14) keeps its links working.
    alerted_fraud_at(&db, "t-old", 1, Utc::now() - Duration::days(2));
    db.client()
        .execute(
            "UPDATE fraudctl_settings SET value = (now() - interval '1 day')::text
             WHERE key = 'verdict_token_registry_since'",
            &[],
        )
        .unwrap();
    let unregistered = token(&db, &key, "t-old", Verdict::Fraud, false);
    assert_eq!(record(&db, &unregistered), "recorded");
    // ... but not those of later alerts (an expiry no issued link of t-new has).
    let claim = verdict::Claim::new("t-new", Verdict::Fraud, Utc::now() + Duration::hours(2));
    let forged_new = verdict::token(&key, &claim.unwrap());
    assert_eq!(record(&db, &forged_new), "unknown_token");
}

#[test]
fn unregistered_tokens_are_accepted_only_within_the_longest_link_lifetime_after_the_registry_started(
) {
    let db = TestDb::new();
    let key = VerdictKey::new(b"integration-test-verdict-key-0123456789").unwrap();
    // Upgraded across V14 two days ago; the alert was sent the day before.
    let sent = chrono::SubsecRound::trunc_subsecs(Utc::now(), 0) - Duration::days(3);
    alerted_fraud_at(&db, "t-old", 1, sent);
    let since = registry_started(&db, Duration::days(2));
    let window_end = since + Duration::hours(720);

    // What the dashboard's credentials alone can write: any signature, the latest expiry a
    // token holds (2286-11-20).
    let forged = format!("v1.t-old.fraud.9999999999.{}", "0".repeat(64));
    assert_eq!(record(&db, &forged), "unknown_token");
    // A link issued before the registry expired by its end plus the longest lifetime.
    let past_window = unregistered(
        &key,
        "t-old",
        Verdict::Fraud,
        window_end + Duration::seconds(1),
    );
    assert_eq!(record(&db, &past_window), "unknown_token");
    // Nor can a link expire later than the longest lifetime after its alert was sent.
    let past_alert_expiry = sent + Duration::hours(720) + Duration::seconds(1);
    assert!(past_alert_expiry < window_end);
    let past_alert = unregistered(&key, "t-old", Verdict::Fraud, past_alert_expiry);
    assert_eq!(record(&db, &past_alert), "unknown_token");
    let in_window = unregistered(&key, "t-old", Verdict::Fraud, sent + Duration::hours(720));
    assert_eq!(record(&db, &in_window), "recorded");
    assert_eq!(record(&db, &in_window), "already_used");

    // Thirty-one days after the registry started, no unregistered token is accepted: neither
    // one that would still be valid, nor one whose expiry was within the window (refused as
    // unknown, not expired).
    alerted_fraud_at(&db, "t-older", 2, Utc::now() - Duration::days(32));
    let since = registry_started(&db, Duration::days(31));
    let later = unregistered(
        &key,
        "t-older",
        Verdict::NotFraud,
        Utc::now() + Duration::hours(1),
    );
    assert_eq!(record(&db, &later), "unknown_token");
    let lapsed = unregistered(
        &key,
        "t-older",
        Verdict::NotFraud,
        since + Duration::hours(719),
    );
    assert_eq!(record(&db, &lapsed), "unknown_token");
    // Registered tokens are not bound by the window.
    let issued = token(&db, &key, "t-older", Verdict::NotFraud, true);
    assert_eq!(record(&db, &issued), "recorded");

    let written: Vec<(String, String)> = db
        .client()
        .query(
            "SELECT trans_num, verdict FROM alert_verdicts ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        written,
        [
            ("t-old".to_string(), "fraud".to_string()),
            ("t-older".to_string(), "not_fraud".to_string())
        ]
    );
}

/// tests/fixtures/card_numbers.json, read at run time.
fn card_numbers() -> serde_json::Value {
    let path = util::root().join("tests/fixtures/card_numbers.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn mask_card_numbers_masks_the_shared_corpus_as_written() {
    let db = TestDb::new();
    let corpus = card_numbers();
    let mut client = db.client();
    let mut mask = |text: &str| -> String {
        client
            .query_one("SELECT mask_card_numbers($1)", &[&text])
            .unwrap()
            .get(0)
    };
    let mut wrong = Vec::new();
    let masked = corpus["masked"].as_array().unwrap();
    let kept = corpus["kept"].as_array().unwrap();
    assert!(!masked.is_empty() && !kept.is_empty());
    for case in masked {
        let (input, want) = (case[0].as_str().unwrap(), case[1].as_str().unwrap());
        let got = mask(input);
        if got != want {
            wrong.push(format!("{input:?}: {got:?}, expected {want:?}"));
        }
    }
    for input in kept.iter().map(|v| v.as_str().unwrap()) {
        let got = mask(input);
        if got != input {
            wrong.push(format!("{input:?}: {got:?}, expected it kept"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let null: Option<String> = client
        .query_one("SELECT mask_card_numbers(NULL)", &[])
        .unwrap()
        .get(0);
    assert_eq!(null, None);
}

#[test]
fn a_note_is_stored_with_its_card_numbers_masked_and_the_reader_sees_none() {
    let db = TestDb::new();
    let key = VerdictKey::new(b"integration-test-verdict-key-0123456789").unwrap();
    alerted_fraud_at(&db, "t-a", 0, Utc::now());
    alerted_fraud_at(&db, "t-b", 1, Utc::now());
    let note = "Customer read 4111 1111 1111 1111 to me, then \u{ff14}\u{ff11}\u{ff11}\u{ff11}-\
                \u{ff11}\u{ff11}\u{ff11}\u{ff11}-\u{ff11}\u{ff11}\u{ff11}\u{ff11}-\
                \u{ff11}\u{ff11}\u{ff11}\u{ff11}; card on file 5555.5555.5555.4444 (ref \
                \u{664}\u{665}\u{663}\u{662}\u{660}\u{661}\u{665}\u{661}\u{661}\u{662}\
                \u{668}\u{663}\u{660}\u{663}\u{666}\u{666}) and 4497913965512794052. Call back on 555 0100";
    let stored = "Customer read ****1111 to me, then ****1111; card on file ****4444 (ref \
                  ****0366) and ****4052. Call back on 555 0100";
    let issued = token(&db, &key, "t-a", Verdict::Fraud, true);
    assert_eq!(record_with_note(&db, &issued, note), "recorded");
    // The 500 characters are counted on what is stored: 510 typed, 499 kept.
    let long = format!("{} 4111 1111 1111 1111", "a".repeat(490));
    let issued = token(&db, &key, "t-b", Verdict::NotFraud, true);
    assert_eq!(record_with_note(&db, &issued, &long), "recorded");

    let mut client = db.client();
    let mut reader = client.transaction().unwrap();
    reader
        .batch_execute("SET LOCAL ROLE fraud_report_reader")
        .unwrap();
    let notes: Vec<String> = reader
        .query("SELECT note FROM v_alert_verdict_history ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        notes,
        [stored.to_string(), format!("{} ****1111", "a".repeat(490))]
    );
    let latest: String = reader
        .query_one(
            "SELECT note FROM v_alert_verdicts_latest WHERE trans_num = 't-a'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(latest, stored);
}

#[test]
fn v15_masks_the_notes_stored_before_it() {
    let db = TestDb::new();
    alerted_fraud(&db, "t-a", 0);
    let mut client = db.client();
    // A note written before V15 (the function did not mask it), and V15 run again over it.
    client
        .batch_execute(
            "INSERT INTO alert_verdicts (trans_num, verdict, note, token_sha256, token_expires_at)
             VALUES ('t-a', 'fraud', 'Card 4111-1111-1111-1111, exp 12/27', sha256('a'), now()),
                    ('t-a', 'not_fraud', 'No card here: 2019-01-01 12:30', sha256('b'), now()),
                    ('t-a', 'fraud', NULL, sha256('c'), now());
             DROP FUNCTION mask_card_numbers(text);",
        )
        .unwrap();
    let v15 = util::root().join("migrations/V15__verdict_notes_and_tokens.sql");
    client
        .batch_execute(&std::fs::read_to_string(v15).unwrap())
        .unwrap();
    let notes: Vec<Option<String>> = client
        .query("SELECT note FROM alert_verdicts ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        notes,
        [
            Some("Card ****1111, exp 12/27".to_string()),
            Some("No card here: 2019-01-01 12:30".to_string()),
            None
        ]
    );
}

#[test]
fn the_digest_shows_how_soon_the_days_frauds_were_emailed() {
    let db = TestDb::new();
    for (i, t) in ["t-a", "t-b", "t-c"].iter().enumerate() {
        alerted_fraud(&db, t, i as u32);
    }
    let no_time: serde_json::Value = serde_json::from_str(&report(&db, "json")).unwrap();
    assert_eq!(
        no_time["summary"]["payment_to_email"]["alerts"], 0,
        "no acceptance time yet"
    );
    assert!(!report(&db, "table").contains("payment to email"));
    db.client()
        .batch_execute(
            "UPDATE fraud_alerts a SET accepted_at = p.trans_time + make_interval(secs =>
                 CASE a.trans_num WHEN 't-a' THEN 1 WHEN 't-b' THEN 2 ELSE 30 END)
             FROM payments_scored p WHERE p.trans_num = a.trans_num",
        )
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&report(&db, "json")).unwrap();
    let l = &json["summary"]["payment_to_email"];
    assert_eq!(l["alerts"], 3);
    // percentile_cont over 1, 2 and 30 s: the median 2 s, the 95th 2 + 0.9 × 28 = 27.2 s.
    assert!(
        (l["p50_seconds"].as_f64().unwrap() - 2.0).abs() < 1e-9,
        "{l}"
    );
    assert!(
        (l["p95_seconds"].as_f64().unwrap() - 27.2).abs() < 1e-9,
        "{l}"
    );
    let table = report(&db, "table");
    assert!(
        table
            .contains("payment to email  median 2.0 s, p95 27.2 s, slowest 30.0 s (3 alerts sent)"),
        "{table}"
    );
}
