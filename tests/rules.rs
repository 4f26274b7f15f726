//! Rules and lists (docs/rules.md) through the pipeline on the sample: each rule's matches equal
//! an independent SQL count over the same payments, the precedence decides, an allowed
//! merchant's predicted frauds are not emailed and a blocked card's payments are, the rule as
//! their first reason.

mod util;

use std::io::Write;
use std::process::Stdio;

use util::*;

const RULES: &str = r#"
[[rule]]
id = "blocked-card"
description = "card on the block list"
owner = "tests"
when = "payment.card in lists.blocked_cards"
action = "alert"

[[rule]]
id = "night-shopping-net"
description = "online shopping over $500 at night"
owner = "tests"
when = 'payment.category == "shopping_net" && payment.amt > 500 && (features.hour >= 22 || features.hour < 4)'
action = "alert"

[[rule]]
id = "trusted-merchant"
description = "a trusted merchant"
owner = "tests"
when = "payment.merchant in lists.trusted_merchants"
action = "allow"

[[rule]]
id = "night-gas"
description = "gas under $60 at night"
owner = "tests"
when = 'payment.category == "gas_transport" && payment.amt < 60 && (features.hour >= 22 || features.hour < 4)'
action = "review"
"#;

/// The sample's card with the most payments among the first 3,600, none of them a fraud.
const BLOCKED_CARD: &str = "630423337322";

/// The independent count of each rule's condition, in SQL over payments_scored.
const NIGHT: &str = "(extract(hour FROM trans_time AT TIME ZONE 'UTC') >= 22
                      OR extract(hour FROM trans_time AT TIME ZONE 'UTC') < 4)";

/// `fraudctl lists ARGS` with `stdin` on its standard input: the command and what it did.
fn lists_run(
    db: &TestDb,
    args: &[&str],
    stdin: &str,
) -> (std::process::Command, std::process::Output) {
    let mut cmd = db.cmd("lists");
    cmd.args(args)
        .env("FRAUDCTL_PAN_HASH_KEY", PAN_KEY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("fraudctl lists");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (cmd, out)
}

/// `fraudctl lists ARGS`, which must succeed: its stdout.
fn lists(db: &TestDb, args: &[&str], stdin: Option<&str>) -> String {
    let (cmd, out) = lists_run(db, args, stdin.unwrap_or(""));
    assert!(out.status.success(), "{}", explain(&cmd, &out, "lists"));
    String::from_utf8(out.stdout).unwrap()
}

fn count(db: &TestDb, sql: &str, param: &str) -> i64 {
    db.client().query_one(sql, &[&param]).expect(sql).get(0)
}

#[test]
fn rules_and_lists_decide_as_documented_and_match_independent_counts() {
    let db = TestDb::new();
    let dir = db.loaded_sample_run();
    // The merchant with the most predicted frauds (scored without rules), trusted from now on.
    let merchant: String = db
        .client()
        .query_one(
            "SELECT merchant FROM payments_scored WHERE predicted_fraud
             GROUP BY merchant ORDER BY count(*) DESC, merchant LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    let added = lists(
        &db,
        &[
            "add",
            "--list",
            "blocked_cards",
            "--card-stdin",
            "--reason",
            "stolen 4111 1111 1111 1111",
        ],
        Some(BLOCKED_CARD),
    );
    assert!(
        added.contains("card ") && !added.contains(BLOCKED_CARD),
        "{added}"
    );
    lists(
        &db,
        &[
            "add",
            "--list",
            "trusted_merchants",
            "--value",
            &merchant,
            "--reason",
            "our shop",
        ],
        None,
    );
    let shown = lists(&db, &["show"], None);
    assert!(
        shown.contains("stolen ****1111") && !shown.contains(BLOCKED_CARD),
        "{shown}"
    );

    let rules = dir.path().join("team.toml");
    std::fs::write(&rules, RULES).unwrap();
    ok(db
        .cmd("score")
        .arg("--run-dir")
        .arg(dir.path())
        .args(["--run-id", "test-run"])
        .arg("--model-dir")
        .arg(default_model())
        .arg("--rules")
        .arg(&rules));
    ok(db
        .cmd("load")
        .arg("--run-dir")
        .arg(dir.path())
        .args(["--run-id", "test-run"]));

    let matched = |rule: &str| {
        count(
            &db,
            "SELECT count(*) FROM payments_scored WHERE $1 = ANY(rules_matched)",
            rule,
        )
    };
    let card = fraudctl::pan::PanProtector::new(PAN_KEY.as_bytes())
        .protect(BLOCKED_CARD)
        .hash;
    let independent = [
        ("blocked-card", "SELECT count(*) FROM payments_scored WHERE cc_hash = $1".into(), card.as_str()),
        ("night-shopping-net", format!("SELECT count(*) FROM payments_scored WHERE category = $1 AND amt > 500 AND {NIGHT}"), "shopping_net"),
        ("trusted-merchant", "SELECT count(*) FROM payments_scored WHERE merchant = $1".into(), merchant.as_str()),
        ("night-gas", format!("SELECT count(*) FROM payments_scored WHERE category = $1 AND amt < 60 AND {NIGHT}"), "gas_transport"),
    ];
    for (rule, sql, param) in &independent {
        let expected = count(&db, sql, param);
        assert!(expected > 0, "{rule}: the sample has payments it matches");
        assert_eq!(matched(rule), expected, "{rule}");
    }
    assert_eq!(db.count("SELECT count(*) FROM payments_scored WHERE rule_set NOT LIKE 'team@%' OR rule_set IS NULL"), 0);

    // The blocked card: every payment an alert, the rule its first reason.
    let blocked = count(&db, "SELECT count(*) FROM payments_scored WHERE decided_by_rule = $1 AND predicted_fraud
                              AND decision = 'alert' AND reasons->0->>'text' LIKE 'rule blocked-card:%'", "blocked-card");
    assert_eq!(blocked, matched("blocked-card"));
    // The trusted merchant: none of its payments alerted (no alert rule matched them), its
    // model frauds allowed.
    let allowed = count(
        &db,
        "SELECT count(*) FROM payments_scored WHERE merchant = $1 AND decision = 'allow'
                              AND NOT predicted_fraud AND fraud_probability >= threshold",
        &merchant,
    );
    assert!(allowed > 0, "the trusted merchant had predicted frauds");
    // Review: the night-gas payments that nothing else decided.
    let review = count(&db, "SELECT count(*) FROM payments_scored WHERE $1 = ANY(rules_matched) AND fraud_probability < threshold
                             AND NOT rules_matched && ARRAY['blocked-card', 'night-shopping-net', 'trusted-merchant']", "night-gas");
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM payments_scored WHERE decision = $1",
            "review"
        ),
        review
    );

    backtests_reproduce_the_stored_decisions_and_count_a_candidate_by_hand(&db, &rules);

    // Emailed: every alert once, no allowed payment.
    let sink = SmtpSink::start(0);
    let mut alert = db.cmd("alert");
    alert
        .arg("--run-dir")
        .arg(dir.path())
        .args([
            "--smtp-url",
            &sink.url(),
            "--to",
            "analysts@example.test",
            "--review-to",
            "reviewers@example.test",
            "--smtp-retries",
            "0",
        ])
        .env("FRAUDCTL_ALERT_MAX_AGE_HOURS", "1000000");
    ok(&mut alert);
    a_review_email_lists_each_review_once(&db, &sink, &mut alert);
    let alerted = db.count("SELECT count(*) FROM fraud_alerts WHERE status = 'sent'");
    assert_eq!(
        alerted,
        db.count("SELECT count(*) FROM payments_scored WHERE predicted_fraud")
    );
    let mail = sink.decoded_messages().join("\n");
    let allowed_frauds: Vec<String> = db
        .client()
        .query(
            "SELECT trans_num FROM payments_scored WHERE decision = 'allow'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        allowed_frauds.iter().all(|t| !mail.contains(t.as_str())),
        "an allowed payment was emailed"
    );
    assert!(
        mail.contains("rule blocked-card: card on the block list"),
        "{mail}"
    );
}

/// The review decisions went in one email to the review address, each once: a second run sends
/// nothing more.
fn a_review_email_lists_each_review_once(
    db: &TestDb,
    sink: &SmtpSink,
    alert: &mut std::process::Command,
) {
    let reviews: Vec<String> = db
        .client()
        .query(
            "SELECT trans_num FROM payments_scored WHERE decision = 'review'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!reviews.is_empty());
    let to_review: Vec<String> = sink
        .messages()
        .into_iter()
        .filter(|m| header(m, "To").contains("reviewers@example.test"))
        .collect();
    assert_eq!(to_review.len(), 1, "one review email");
    let email = &to_review[0];
    assert!(header(email, "Subject").starts_with(&format!("Review: {} payments", reviews.len())));
    assert!(reviews.iter().all(|t| email.contains(t.as_str())));
    assert!(!header(email, "To").contains("analysts@"));
    assert_eq!(
        db.count("SELECT count(*) FROM review_notices WHERE status = 'sent'"),
        reviews.len() as i64
    );
    // Not frauds: no alert recorded for them.
    assert_eq!(
        db.count("SELECT count(*) FROM fraud_alerts a JOIN payments_scored p USING (trans_num) WHERE p.decision = 'review'"),
        0
    );
    let before = sink.messages().len();
    let again = ok(alert);
    assert_eq!(again["reviews"]["sent"], 0, "{again}");
    assert_eq!(sink.messages().len(), before);
    // A run that died after the server accepted the email, before recording it: the next
    // sends that same email again (its Message-ID), which mail systems recognise.
    db.client()
        .execute(
            "UPDATE review_notices SET status = 'sending', accepted_at = NULL",
            &[],
        )
        .unwrap();
    let resent = ok(alert);
    assert_eq!(resent["reviews"]["sent"], reviews.len(), "{resent}");
    let last = sink.messages().pop().unwrap();
    assert_eq!(header(&last, "Message-ID"), header(email, "Message-ID"));
    assert_eq!(
        db.count("SELECT count(*) FROM review_notices WHERE status = 'sent'"),
        reviews.len() as i64
    );
}

#[test]
fn lists_refuse_card_numbers_and_unknown_entries_and_keep_every_change() {
    let db = TestDb::new();
    let fails_with = |args: &[&str], stdin: &str, says: &str| {
        let (cmd, out) = lists_run(&db, args, stdin);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(
            out.status.code(),
            Some(4),
            "{}",
            explain(&cmd, &out, "lists")
        );
        assert!(
            stderr.contains(says) && !stderr.contains("4111111111111111"),
            "{stderr}"
        );
    };
    let add = ["add", "--list", "blocked_cards", "--reason", "r"];
    fails_with(
        &[&add[..], &["--value", "4111 1111 1111 1111"]].concat(),
        "",
        "holds a card number in clear",
    );
    fails_with(
        &[&add[..], &["--card-stdin"]].concat(),
        "not a card\n",
        "standard input holds no card number",
    );
    fails_with(
        &[&add[..], &["--card-of", "no-such-payment"]].concat(),
        "",
        "payments_scored holds no payment no-such-payment",
    );
    fails_with(
        &[
            "remove",
            "--list",
            "blocked_cards",
            "--value",
            "x",
            "--reason",
            "r",
        ],
        "",
        "list blocked_cards holds no entry \"x\"",
    );
    fails_with(
        &["add", "--list", "Bad-Name", "--value", "x", "--reason", "r"],
        "",
        "list_entries_list_check",
    );

    // A card's hash is accepted whatever digit runs it holds; each change is kept.
    let hash = "4111111111111111".repeat(4);
    lists(&db, &[&add[..], &["--value", &hash]].concat(), None);
    lists(
        &db,
        &[
            "remove",
            "--list",
            "blocked_cards",
            "--value",
            &hash,
            "--reason",
            "a mistake",
        ],
        None,
    );
    assert_eq!(db.count("SELECT count(*) FROM list_entries"), 0);
    assert_eq!(
        db.count("SELECT count(*) FROM list_changes WHERE change IN ('add', 'remove')"),
        2
    );
    // The report's reader reads the lists and cannot change them.
    let mut reader = db.client();
    reader
        .batch_execute("SET ROLE fraud_report_reader")
        .unwrap();
    reader
        .query("SELECT count(*) FROM list_changes", &[])
        .unwrap();
    let refused = reader
        .execute("SELECT list_add('x', 'y', 'z', 'w', NULL)", &[])
        .unwrap_err();
    let message = refused.as_db_error().map(|e| e.message().to_string());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("permission denied")),
        "{refused:?}"
    );
}

/// `fraudctl backtest` over the loaded period, as JSON.
fn backtest(db: &TestDb, rules: &std::path::Path, more: &[&str]) -> serde_json::Value {
    let (from, to): (String, String) = {
        let row = db
            .client()
            .query_one(
                "SELECT min(trans_time AT TIME ZONE 'UTC')::date::text,
                        max(trans_time AT TIME ZONE 'UTC')::date::text FROM payments_scored",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    let mut cmd = db.cmd("backtest");
    cmd.args(["--from", &from, "--to", &to, "--format", "json", "--rules"])
        .arg(rules)
        .arg("--model-dir")
        .arg(default_model())
        .args(more);
    let out = run(&mut cmd);
    assert!(out.status.success(), "{}", explain(&cmd, &out, "backtest"));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn backtests_reproduce_the_stored_decisions_and_count_a_candidate_by_hand(
    db: &TestDb,
    rules: &std::path::Path,
) {
    // The rules and model in force: exactly the decisions stored.
    let same = backtest(db, rules, &[]);
    assert_eq!(same["differences"], 0, "{same}");
    assert_eq!(same["without_inputs"], 0, "{same}");
    assert_eq!(
        same["payments"],
        db.count("SELECT count(*) FROM payments_scored"),
        "{same}"
    );
    for rule in same["rules"].as_array().unwrap() {
        let id = rule["id"].as_str().unwrap();
        let stored = count(
            db,
            "SELECT count(*) FROM payments_scored WHERE $1 = ANY(rules_matched)",
            id,
        );
        assert_eq!(rule["payments"], stored, "{id}: {rule}");
    }
    // The card taken off the block list since: the payments decided while it was on it are
    // decided as they were (the lists as of each decision), not as the list is now.
    lists(
        db,
        &[
            "remove",
            "--list",
            "blocked_cards",
            "--card-stdin",
            "--reason",
            "found",
        ],
        Some(BLOCKED_CARD),
    );
    let later = backtest(db, rules, &[]);
    assert_eq!(later["differences"], 0, "{later}");
    assert_eq!(later["rules"], same["rules"], "{later}");
    // Each backtest kept, its report as printed (what the dashboard shows).
    let kept: serde_json::Value = db
        .client()
        .query_one(
            "SELECT report FROM backtest_runs WHERE rules_file LIKE '%/team.toml'
             ORDER BY id DESC LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(kept, later);
    assert_eq!(db.count("SELECT count(*) FROM backtest_runs"), 2);
    // With the lists as they are now (what today's lists would have done): the card's payments
    // no longer match, and the alerts they had become differences.
    let now = backtest(db, rules, &["--lists", "now"]);
    assert_eq!(now["rules"][0]["id"], "blocked-card");
    assert_eq!(now["rules"][0]["payments"], 0, "{now}");
    assert!(now["differences"].as_u64().unwrap() > 0, "{now}");
    // A candidate: one alert rule, no lists. Its report against hand counts in SQL.
    let candidate = rules.with_file_name("candidate.toml");
    std::fs::write(
        &candidate,
        "[[rule]]\nid = \"big\"\ndescription = \"over $1,000\"\nowner = \"tests\"\nwhen = \"payment.amt > 1000\"\naction = \"alert\"\n",
    )
    .unwrap();
    let report = backtest(db, &candidate, &[]);
    let hand = |filter: &str| {
        db.count(&format!(
            "SELECT count(*) FROM payments_scored WHERE {filter}"
        ))
    };
    let alert = "(amt > 1000 OR fraud_probability >= threshold)";
    let big = &report["rules"][0];
    assert_eq!(big["payments"], hand("amt > 1000"), "{report}");
    assert_eq!(
        big["label_frauds"],
        hand("amt > 1000 AND is_fraud_label"),
        "{report}"
    );
    assert_eq!(report["alerts"]["payments"], hand(alert), "{report}");
    assert_eq!(
        report["differences"],
        hand(&format!("{alert} <> predicted_fraud")),
        "{report}"
    );
    assert_eq!(
        report["caught_not_live"],
        hand(&format!(
            "{alert} AND NOT predicted_fraud AND is_fraud_label"
        )),
        "{report}"
    );
    assert!(
        hand("amt > 1000") > 0 && report["differences"].as_i64().unwrap() > 0,
        "{report}"
    );
}
