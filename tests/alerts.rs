//! The `alert` stage against a real SMTP server (scripts/smtp_sink.py, aiosmtpd).

mod util;

use std::collections::HashSet;

use fraudctl::verdict::{self, Verdict, VerdictKey};
use util::*;

const VERDICT_KEY: &str = "integration-test-verdict-key-0123456789";

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

/// The cards with predicted frauds and each one's frauds (trans_num, oldest first).
fn frauds_by_card(db: &TestDb) -> Vec<(String, Vec<String>)> {
    let rows = db
        .client()
        .query(
            "SELECT cc_hash, array_agg(trans_num ORDER BY trans_time, trans_num)
             FROM payments_scored WHERE predicted_fraud GROUP BY cc_hash",
            &[],
        )
        .unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

/// The decoded email that reports `trans_num`; fails unless exactly one does.
fn the_email_of<'a>(emails: &'a [String], trans_num: &str) -> &'a str {
    let line = format!("Transaction: {trans_num}");
    let holding: Vec<&String> = emails.iter().filter(|m| m.contains(&line)).collect();
    assert_eq!(
        holding.len(),
        1,
        "{trans_num} is in {} emails, not one",
        holding.len()
    );
    holding[0]
}

#[test]
fn each_predicted_fraud_is_in_exactly_one_email_one_per_card_with_what_an_analyst_needs() {
    let db = TestDb::new();
    let dir = db.loaded_sample_run();
    let cards = frauds_by_card(&db);
    let frauds: usize = cards.iter().map(|(_, f)| f.len()).sum();
    assert!(frauds >= 10, "the sample has frauds: {frauds}");
    assert!(cards.iter().any(|(_, f)| f.len() > 1), "a card has a burst");
    let sink = SmtpSink::start(0);
    let out =
        util::run(alert_any_age(&db, &dir, &sink.url()).env("FRAUDCTL_VERDICT_KEY", VERDICT_KEY));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let emails = sink.decoded_messages();
    assert_eq!(emails.len(), cards.len(), "one email per card");
    assert!(sink.messages().iter().all(|m| m.contains("text/html")));

    let mut client = db.client();
    for (_, card_frauds) in &cards {
        let email = the_email_of(&emails, &card_frauds[0]);
        assert_eq!(
            header(email, "Message-ID"),
            format!("<fraud-alert.{}@fraudctl>", card_frauds[0]),
            "the Message-ID is made from the card's oldest fraud"
        );
        assert_eq!(header(email, "To"), "analysts@example.test");
        for trans_num in card_frauds {
            assert!(std::ptr::eq(the_email_of(&emails, trans_num), email));
            let row = client.query_one(
                "SELECT p.cc_last4, '$' || to_char(p.amt, 'FM999,999,990.00'), p.model_version, a.message_id, a.status,
                        p.reasons -> 0 ->> 'text'
                 FROM payments_scored p JOIN fraud_alerts a USING (trans_num) WHERE trans_num = $1",
                &[trans_num]).unwrap();
            let needed = [
                format!("**** {}", row.get::<_, &str>(0)),
                row.get::<_, String>(1),
                row.get::<_, String>(2),
                "Probability:".into(),
                "Cardholder:  lives in ".into(),
                format!("Dashboard:   http://localhost:8501/?payment={trans_num}"),
                format!("Why:         {}", row.get::<_, &str>(5)),
                "Next step: call the cardholder to confirm the payment".into(),
                format!(
                    "block card **** {}. Then give your verdict",
                    row.get::<_, &str>(0)
                ),
                "Recent activity on the card".into(),
                "<- in this alert".into(),
                "?day=".into(),
            ];
            for needed in needed {
                assert!(
                    email.contains(&needed),
                    "email for {trans_num} lacks {needed:?}:\n{email}"
                );
            }
            assert_eq!(
                row.get::<_, &str>(3),
                header(email, "Message-ID"),
                "ledger names the email"
            );
            assert_eq!(row.get::<_, &str>(4), "sent");
        }
        let claimed: Vec<(String, Verdict)> = verdict_tokens(email)
            .iter()
            .map(|t| {
                let claim = verdict::verify(&key(), t, chrono::Utc::now()).expect("a valid link");
                (claim.trans_num, claim.verdict)
            })
            .collect();
        let expected: Vec<(String, Verdict)> = card_frauds
            .iter()
            .flat_map(|t| [(t.clone(), Verdict::Fraud), (t.clone(), Verdict::NotFraud)])
            .collect();
        assert_eq!(
            claimed, expected,
            "each fraud's two verdict links, in order"
        );
    }

    // An analyst's click on a link records the verdict (the dashboard verifies, then calls this).
    let token = &verdict_tokens(&emails[0])[0];
    let status: String = client
        .query_one("SELECT record_alert_verdict($1)", &[token])
        .unwrap()
        .get(0);
    assert_eq!(status, "recorded");
    // A link signed with the same key but never in an email records nothing.
    let claim = verdict::verify(&key(), token, chrono::Utc::now()).unwrap();
    let later = claim.expires_at + chrono::Duration::seconds(1);
    let unissued = verdict::Claim::new(&claim.trans_num, Verdict::NotFraud, later).unwrap();
    let status: String = client
        .query_one(
            "SELECT record_alert_verdict($1)",
            &[&verdict::token(&key(), &unissued)],
        )
        .unwrap()
        .get(0);
    assert_eq!(status, "unknown_token");
    // Again: nothing new is sent.
    let again = ok(&mut alert_any_age(&db, &dir, &sink.url()));
    assert_eq!(
        (again["sent"].as_i64(), again["emails"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(sink.messages().len(), cards.len());

    // No card number in clear in any email or log.
    let mut everything = emails.concat() + &sink.messages().concat();
    everything.push_str(&String::from_utf8_lossy(&out.stderr));
    let leaked = card_numbers_in(&everything, &sample_pans());
    assert!(leaked.is_empty(), "card numbers in clear: {leaked:?}");
}

fn key() -> VerdictKey {
    VerdictKey::new(VERDICT_KEY.as_bytes()).unwrap()
}

/// The verdict tokens of an email's links, in order.
fn verdict_tokens(email: &str) -> Vec<String> {
    let mut tokens: Vec<String> = email
        .split("?verdict=")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
                .collect()
        })
        .collect();
    // The plain-text part, then the HTML part: the same links twice.
    let half = tokens.len() / 2;
    assert_eq!(
        tokens[..half],
        tokens[half..],
        "both parts hold the same links"
    );
    tokens.truncate(half);
    tokens
}

/// The sample's first `n` data rows after the first `skip`, as a CSV of the data set's layout.
fn sample_rows(skip: usize, n: usize) -> tempfile::NamedTempFile {
    let text = std::fs::read_to_string(sample_csv()).expect("the shared sample");
    let mut lines = text.lines();
    let header = lines.next().expect("header");
    let rows: Vec<&str> = lines.skip(skip).take(n).collect();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), format!("{header}\n{}\n", rows.join("\n"))).unwrap();
    file
}

/// extract (from `csv`) → transform (history from `db`) → score → load, in a new run directory.
fn loaded_run_of(db: &TestDb, csv: &std::path::Path) -> RunDir {
    let dir = RunDir::new();
    ok(dir.stage("extract").arg("--from-csv").arg(csv));
    ok(dir
        .stage("transform")
        .env("FRAUDCTL_DATABASE_URL", &db.url)
        .arg("--feature-spec")
        .arg(default_model().join("feature_spec.json")));
    ok(dir.stage("score").arg("--model-dir").arg(default_model()));
    ok(db.cmd("load").arg("--run-dir").arg(dir.path()));
    dir
}

#[test]
fn a_later_runs_frauds_on_an_alerted_card_follow_up_in_its_thread() {
    // Where to cut the sample: just after the first fraud of a card that has more later.
    let reference = TestDb::new();
    loaded_run_of(&reference, sample_rows(0, 3600).path());
    let (_, burst) = frauds_by_card(&reference)
        .into_iter()
        .find(|(_, f)| f.len() > 1)
        .expect("a card with a burst");
    let text = std::fs::read_to_string(sample_csv()).unwrap();
    let cut = text
        .lines()
        .skip(1)
        .position(|l| l.contains(&burst[0]))
        .expect("the fraud's row")
        + 1;

    let db = TestDb::new();
    let sink = SmtpSink::start(0);
    let first = loaded_run_of(&db, sample_rows(0, cut).path());
    ok(&mut alert_any_age(&db, &first, &sink.url()));
    let later = loaded_run_of(&db, sample_rows(cut, 3600 - cut).path());
    ok(&mut alert_any_age(&db, &later, &sink.url()));

    let emails = sink.decoded_messages();
    let root = the_email_of(&emails, &burst[0]);
    let follow_up = the_email_of(&emails, &burst[1]);
    assert!(
        !std::ptr::eq(root, follow_up),
        "the later fraud went out in a later email"
    );
    let root_id = header(root, "Message-ID");
    assert_eq!(header(follow_up, "In-Reply-To"), root_id);
    assert!(header(follow_up, "References").contains(root_id));
    assert!(
        header(follow_up, "Subject").starts_with("Re: "),
        "{follow_up}"
    );
    assert!(follow_up.contains("a follow-up"));
    for trans_num in &burst[1..] {
        assert!(std::ptr::eq(the_email_of(&emails, trans_num), follow_up));
    }
    let threads: i64 = db
        .client()
        .query_one(
            "SELECT count(DISTINCT a.thread_id) FROM fraud_alerts a JOIN payments_scored p USING (trans_num)
             WHERE p.trans_num = ANY($1)",
            &[&burst],
        )
        .unwrap()
        .get(0);
    assert_eq!(threads, 1, "the card's alerts share one thread");
}

#[test]
fn a_server_that_refuses_then_recovers_ends_with_every_alert_sent_once() {
    let db = TestDb::new();
    let dir = db.loaded_sample_run();
    let frauds = db.count("SELECT count(*) FROM payments_scored WHERE predicted_fraud");
    let cards = frauds_by_card(&db);

    // Down: nothing is sent, nothing recorded, exit 3.
    let port = free_port();
    let stderr = fails(
        &mut alert_any_age(&db, &dir, &format!("smtp://127.0.0.1:{port}")),
        3,
    );
    assert!(stderr.contains("SMTP server unavailable"), "{stderr}");
    assert_only_one_email_being_sent(&db);

    // Up on the same address, but refusing the first message (451): the task fails, nothing
    // recorded sent; the same email waits to be sent again.
    let sink = SmtpSink::start_on(port, 1);
    fails(&mut alert_any_age(&db, &dir, &sink.url()), 3);
    assert_only_one_email_being_sent(&db);
    assert!(sink.messages().is_empty());

    // Recovered: a run capped at two emails, then the rest; each fraud goes out once.
    let first = ok(alert_any_age(&db, &dir, &sink.url()).args(["--max-emails", "2"]));
    assert_eq!(first["emails"], 2);
    let last = ok(&mut alert_any_age(&db, &dir, &sink.url()));
    assert_eq!(
        first["sent"].as_i64().unwrap() + last["sent"].as_i64().unwrap(),
        frauds
    );
    let ids: Vec<String> = sink
        .messages()
        .iter()
        .map(|m| header(m, "Message-ID").to_string())
        .collect();
    assert_eq!(ids.len(), cards.len());
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "no alert was sent twice"
    );
    let emails = sink.decoded_messages();
    for (_, card_frauds) in &cards {
        card_frauds.iter().for_each(|t| {
            the_email_of(&emails, t);
        });
    }
    assert!(
        emails.iter().all(|m| !m.contains("?verdict=")),
        "without FRAUDCTL_VERDICT_KEY, no verdict links"
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
    let dir = db.loaded_sample_run();
    let frauds = db.count("SELECT count(*) FROM payments_scored WHERE predicted_fraud");
    let cards = frauds_by_card(&db);
    let refused = oldest_fraud(&db);
    let (_, burst) = cards.iter().find(|(_, f)| f[0] == refused).unwrap();
    let sink = SmtpSink::refusing(&[&refused], None);

    let summary = ok(&mut alert_any_age(&db, &dir, &sink.url()));
    let refused_frauds = burst.len() as i64;
    assert_eq!(
        summary["failed"].as_i64(),
        Some(refused_frauds),
        "{summary}"
    );
    assert_eq!(
        summary["sent"].as_i64(),
        Some(frauds - refused_frauds),
        "{summary}"
    );
    assert_eq!(sink.messages().len(), cards.len() - 1);
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
    let retried = ok(alert(&db, &dir, &fixed.url()).args(["--retry-failed", &burst.join(",")]));
    assert_eq!(
        retried["sent"].as_i64(),
        Some(refused_frauds),
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
    let dir = db.loaded_sample_run();
    let sink = SmtpSink::refusing(&[], Some("fraudctl@localhost"));
    let stderr = fails(&mut alert_any_age(&db, &dir, &sink.url()), 5);
    assert!(
        stderr.contains("553") && stderr.contains("every alert"),
        "a refusal that concerns every message says so: {stderr}"
    );
    assert_only_one_email_being_sent(&db);
    assert!(sink.messages().is_empty());
}

/// After a run that could not send: no alert recorded but the frauds of the one email it tried,
/// recorded `sending` (the next run sends that email first).
fn assert_only_one_email_being_sent(db: &TestDb) {
    assert_eq!(
        db.count("SELECT count(*) FROM fraud_alerts WHERE status <> 'sending'"),
        0
    );
    assert_eq!(
        db.count("SELECT count(DISTINCT message_id) FROM fraud_alerts WHERE status = 'sending'"),
        1
    );
}
