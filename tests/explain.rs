//! `fraudctl explain`: a payment explained from its run directory and, once the directory is
//! gone, from what `payments_scored` stored of it, alike.

mod util;

use util::*;

/// `fraudctl explain` of `trans_nums` against `db`, from `run_dir` if given: its stdout lines.
fn explain_lines(db: &TestDb, run_dir: Option<&RunDir>, trans_nums: &[&str]) -> Vec<String> {
    let mut cmd = db.cmd("explain");
    cmd.arg("--model-dir").arg(default_model());
    if let Some(dir) = run_dir {
        cmd.arg("--run-dir").arg(dir.path());
    }
    for t in trans_nums {
        cmd.args(["--trans-num", t]);
    }
    let out = run(&mut cmd);
    assert!(
        out.status.success(),
        "{}",
        util::explain(&cmd, &out, "explain")
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_stored_payment_is_explained_as_its_run_directory_explains_it() {
    let db = TestDb::new();
    let dir = db.loaded_sample_run();
    // A predicted fraud and a legitimate payment.
    let pick = |predicted: bool| -> String {
        db.client()
            .query_one(
                "SELECT trans_num FROM payments_scored WHERE predicted_fraud = $1
                 ORDER BY trans_num LIMIT 1",
                &[&predicted],
            )
            .unwrap()
            .get(0)
    };
    let (fraud, legit) = (pick(true), pick(false));
    let asked = [fraud.as_str(), legit.as_str()];
    let from_run = explain_lines(&db, Some(&dir), &asked);
    let stored = explain_lines(&db, None, &asked);
    assert_eq!(from_run.len(), 2, "{from_run:?}");
    let sorted = |mut lines: Vec<String>| {
        lines.sort();
        lines
    };
    assert_eq!(sorted(stored.clone()), sorted(from_run));
    // The stored fraud's reasons are what score wrote for it.
    let line: serde_json::Value =
        serde_json::from_str(stored.iter().find(|l| l.contains(&fraud)).unwrap()).unwrap();
    let written: serde_json::Value = db
        .client()
        .query_one(
            "SELECT reasons FROM payments_scored WHERE trans_num = $1",
            &[&fraud],
        )
        .unwrap()
        .get(0);
    assert_eq!(line["reasons"], written);
}

#[test]
fn a_payment_not_stored_or_stored_without_inputs_is_bad_input_naming_it() {
    let db = TestDb::new();
    db.loaded_sample_run();
    let stored: String = db
        .client()
        .query_one(
            "SELECT trans_num FROM payments_scored ORDER BY trans_num LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    let mut cmd = db.cmd("explain");
    cmd.arg("--model-dir").arg(default_model()).args([
        "--trans-num",
        &stored,
        "--trans-num",
        "no-such-payment",
    ]);
    let stderr = fails(&mut cmd, 4);
    assert!(
        stderr.contains("payments_scored holds no payment with trans_num no-such-payment"),
        "{stderr}"
    );
    assert!(String::from_utf8(run(&mut cmd).stdout)
        .unwrap()
        .contains(&stored));

    db.client()
        .execute(
            "UPDATE payments_scored SET features = NULL WHERE trans_num = $1",
            &[&stored],
        )
        .unwrap();
    let mut cmd = db.cmd("explain");
    cmd.arg("--model-dir")
        .arg(default_model())
        .args(["--trans-num", &stored]);
    let stderr = fails(&mut cmd, 4);
    assert!(
        stderr.contains("before its model inputs were stored"),
        "{stderr}"
    );
}
