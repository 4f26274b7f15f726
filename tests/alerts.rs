//! The `alert` stage against a real SMTP server (scripts/smtp_sink.py, aiosmtpd).

mod util;

use std::collections::HashSet;

use util::*;

/// A loaded run of the sample's first 3,600 transactions, at their original times (so the
/// predictions do not depend on the hour the test runs at: 18 predicted frauds).
fn loaded_sample_run(db: &TestDb) -> RunDir {
    let n = 3600u32;
    let sim = Simulator::start(&[
        "--csv",
        sample_csv().to_str().unwrap(),
        "--time-mode",
        "original",
        "--rows-per-response",
        "100",
    ]);
    let dir = RunDir::new();
    ok(dir.stage("extract").args([
        "--api-url",
        &sim.url(),
        "--max-records",
        &n.to_string(),
        "--poll-interval-ms",
        "0",
    ]));
    ok(dir
        .stage("transform")
        .arg("--feature-spec")
        .arg(default_model().join("feature_spec.json")));
    ok(dir.stage("score").arg("--model-dir").arg(default_model()));
    ok(db
        .cmd("load")
        .arg("--run-dir")
        .arg(dir.path())
        .args(["--run-id", "test-run"]));
    dir
}

fn alert(db: &TestDb, dir: &RunDir, smtp: &str) -> std::process::Command {
    let mut cmd = db.cmd("alert");
    cmd.arg("--run-dir").arg(dir.path()).args([
        "--smtp-url",
        smtp,
        "--to",
        "analysts@example.test",
        "--smtp-retries",
        "0",
    ]);
    cmd
}

/// `alert` for frauds of any age: the sample's payments are years old.
fn alert_any_age(db: &TestDb, dir: &RunDir, smtp: &str) -> std::process::Command {
    let mut cmd = alert(db, dir, smtp);
    cmd.env("FRAUDCTL_ALERT_MAX_AGE_HOURS", "1000000");
    cmd
}

#[test]
fn each_predicted_fraud_is_emailed_once_with_what_an_analyst_needs() {
    let db = TestDb::new();
    let dir = loaded_sample_run(&db);
    let frauds = db.count("SELECT count(*) FROM payments_scored WHERE predicted_fraud");
    assert!(frauds >= 10, "the sample has frauds: {frauds}");
    let sink = SmtpSink::start(0);
    let out = util::run(&mut alert_any_age(&db, &dir, &sink.url()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let messages = sink.messages();
    assert_eq!(messages.len() as i64, frauds);

    let rows = db.client().query(
        "SELECT trans_num, cc_last4, to_char(amt, 'FM999999990.00'), merchant, model_version FROM payments_scored WHERE predicted_fraud", &[]).unwrap();
    for row in rows {
        let trans_num: &str = row.get(0);
        let id = format!("<fraud-alert.{trans_num}@fraudctl>");
        let message = messages
            .iter()
            .find(|m| header(m, "Message-ID") == id)
            .unwrap_or_else(|| panic!("no email for {trans_num}"));
        assert_eq!(header(message, "To"), "analysts@example.test");
        for needed in [
            format!("**** {}", row.get::<_, &str>(1)),
            row.get::<_, String>(2),
            row.get::<_, String>(4),
            "Probability:".into(),
            "text/html".into(),
            "?day=".into(),
        ] {
            assert!(
                message.contains(&needed),
                "email for {trans_num} lacks {needed:?}"
            );
        }
        let _: &str = row.get(3);
    }
    // Again: nothing new is sent.
    let again = ok(&mut alert_any_age(&db, &dir, &sink.url()));
    assert_eq!(again["sent"], 0);
    assert_eq!(sink.messages().len() as i64, frauds);
    assert_eq!(
        db.count("SELECT count(*) FROM fraud_alerts WHERE status = 'sent'"),
        frauds
    );

    // No card number in clear in any email or log.
    let pans = sample_pans();
    let mut everything = messages.concat();
    everything.push_str(&String::from_utf8_lossy(&out.stderr));
    let leaked: Vec<&String> = pans
        .iter()
        .filter(|p| everything.contains(p.as_str()))
        .collect();
    assert!(leaked.is_empty(), "card numbers in clear: {leaked:?}");
}

#[test]
fn a_server_that_refuses_then_recovers_ends_with_every_alert_sent_once() {
    let db = TestDb::new();
    let dir = loaded_sample_run(&db);
    let frauds = db.count("SELECT count(*) FROM payments_scored WHERE predicted_fraud");

    // Down: nothing is sent, nothing recorded, exit 3.
    let port = free_port();
    let stderr = fails(
        &mut alert_any_age(&db, &dir, &format!("smtp://127.0.0.1:{port}")),
        3,
    );
    assert!(stderr.contains("SMTP server unavailable"), "{stderr}");
    assert_eq!(db.count("SELECT count(*) FROM fraud_alerts"), 0);

    // Up on the same address, but refusing the first message (451): the task fails, nothing recorded.
    let sink = SmtpSink::start_on(port, 1);
    fails(&mut alert_any_age(&db, &dir, &sink.url()), 3);
    assert_eq!(db.count("SELECT count(*) FROM fraud_alerts"), 0);
    assert!(sink.messages().is_empty());

    // Recovered: a run capped at two emails, then the rest; each alert goes out once.
    let first = ok(alert_any_age(&db, &dir, &sink.url()).args(["--max-emails", "2"]));
    assert_eq!(first["sent"], 2);
    let last = ok(&mut alert_any_age(&db, &dir, &sink.url()));
    assert_eq!(last["sent"].as_i64().unwrap(), frauds - 2);
    let ids: Vec<String> = sink
        .messages()
        .iter()
        .map(|m| header(m, "Message-ID").to_string())
        .collect();
    assert_eq!(ids.len() as i64, frauds);
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "no alert was sent twice"
    );
}

#[test]
fn old_frauds_met_in_a_backfill_are_recorded_not_emailed() {
    let db = TestDb::new();
    let dir = RunDir::new();
    features_from_sample(&dir, 500);
    ok(dir.stage("score").arg("--model-dir").arg(default_model()));
    ok(db.cmd("load").arg("--run-dir").arg(dir.path()));
    let frauds = db.count("SELECT count(*) FROM payments_scored WHERE predicted_fraud");
    let sink = SmtpSink::start(0);
    let dry = util::run(alert(&db, &dir, &sink.url()).arg("--dry-run"));
    let planned = String::from_utf8_lossy(&dry.stdout);
    assert_eq!(
        planned.matches("\"action\":\"suppress\"").count() as i64,
        frauds,
        "dry run lists what it would do"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM fraud_alerts"),
        0,
        "a dry run changes nothing"
    );
    let summary = ok(&mut alert(&db, &dir, &sink.url()));
    assert_eq!(
        (summary["sent"].as_i64(), summary["suppressed"].as_i64()),
        (Some(0), Some(frauds))
    );
    assert!(sink.messages().is_empty());
    assert_eq!(
        db.count("SELECT count(*) FROM fraud_alerts WHERE status = 'suppressed'"),
        frauds
    );
}

/// The oldest predicted fraud of the run, whose alert is sent first.
fn oldest_fraud(db: &TestDb) -> String {
    db.client()
        .query_one(
            "SELECT trans_num FROM payments_scored WHERE predicted_fraud ORDER BY trans_time, trans_num LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0)
}

#[test]
fn a_message_refused_for_good_is_recorded_failed_and_the_others_still_go_out() {
    let db = TestDb::new();
    let dir = loaded_sample_run(&db);
    let frauds = db.count("SELECT count(*) FROM payments_scored WHERE predicted_fraud");
    let refused = oldest_fraud(&db);
    let sink = SmtpSink::refusing(&[&refused], None);

    let summary = ok(&mut alert_any_age(&db, &dir, &sink.url()));
    assert_eq!(summary["failed"], 1, "{summary}");
    assert_eq!(summary["sent"].as_i64(), Some(frauds - 1), "{summary}");
    assert_eq!(sink.messages().len() as i64, frauds - 1);
    let row = db
        .client()
        .query_one(
            "SELECT status, reason FROM fraud_alerts WHERE trans_num = $1",
            &[&refused],
        )
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), "failed");
    let reason: &str = row.get(1);
    assert!(
        reason.contains("554") && reason.contains("content rejected"),
        "{reason}"
    );

    // Not retried behind the operator's back, whatever the next runs find.
    let again = ok(&mut alert_any_age(&db, &dir, &sink.url()));
    assert_eq!(
        (again["sent"].as_i64(), again["failed"].as_i64()),
        (Some(0), Some(0))
    );

    // The operator's retry, once the server takes it: sent, with the alert's Message-ID.
    let fixed = SmtpSink::start(0);
    let retried = ok(alert(&db, &dir, &fixed.url()).args(["--retry-failed", &refused]));
    assert_eq!(
        retried["sent"], 1,
        "the retry ignores the age rule: {retried}"
    );
    assert_eq!(
        header(&fixed.messages()[0], "Message-ID"),
        format!("<fraud-alert.{refused}@fraudctl>")
    );
    assert_eq!(
        db.count("SELECT count(*) FROM fraud_alerts WHERE status = 'sent'"),
        frauds
    );
}

#[test]
fn a_refused_sender_fails_the_run_and_records_nothing() {
    let db = TestDb::new();
    let dir = loaded_sample_run(&db);
    let sink = SmtpSink::refusing(&[], Some("fraudctl@localhost"));
    let stderr = fails(&mut alert_any_age(&db, &dir, &sink.url()), 5);
    assert!(
        stderr.contains("553") && stderr.contains("every alert"),
        "a refusal that concerns every message says so: {stderr}"
    );
    assert_eq!(db.count("SELECT count(*) FROM fraud_alerts"), 0);
    assert!(sink.messages().is_empty());
}
