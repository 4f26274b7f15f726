//! What the stages say: JSON logs, progress on long stages, and the report on whether the
//! pipeline saw its day.

use super::*;

/// stderr's lines, each parsed as a JSON object.
fn json_lines(stderr: &[u8]) -> Vec<serde_json::Map<String, Value>> {
    String::from_utf8_lossy(stderr)
        .lines()
        .map(|l| match serde_json::from_str(l) {
            Ok(Value::Object(event)) => event,
            _ => panic!("not a JSON object: {l:?}"),
        })
        .collect()
}

#[test]
fn json_logs_are_one_object_a_line_with_the_text_logs_fields() {
    let dir = RunDir::new();
    let csv = dir.file("input.csv");
    let text = std::fs::read_to_string(sample_csv()).unwrap();
    std::fs::write(&csv, text.lines().take(30).collect::<Vec<_>>().join("\n")).unwrap();
    let extract = |format: &str| {
        let mut cmd = RunDir::new().stage("extract");
        cmd.arg("--from-csv")
            .arg(&csv)
            .env("FRAUDCTL_LOG_FORMAT", format);
        let out = run(&mut cmd);
        assert!(out.status.success(), "{}", explain(&cmd, &out, "failed"));
        out.stderr
    };
    let events = json_lines(&extract("json"));
    let text = String::from_utf8(extract("text")).unwrap();
    assert_eq!(
        events.len(),
        text.lines().count(),
        "one line an event:\n{text}"
    );
    for (event, line) in events.iter().zip(text.lines()) {
        assert!(
            event["timestamp"].is_string() && event["level"] == "INFO",
            "{event:?}"
        );
        let message = event["message"].as_str().unwrap();
        assert!(line.contains(message), "{line:?} lacks {message:?}");
        for (field, value) in event
            .iter()
            .filter(|(k, _)| !["timestamp", "level", "message"].contains(&k.as_str()))
        {
            let shown = value
                .as_str()
                .map_or(value.to_string(), |s| format!("{s:?}"));
            assert!(
                line.contains(&format!("{field}={shown}")),
                "{line:?} lacks {field}={shown}"
            );
        }
    }
    assert!(events
        .iter()
        .any(|e| e["message"] == "started" && e["stage"] == "extract"));

    // The failure that ends a run is an event too, with its exit code.
    let mut load = dir.stage("load");
    load.env("FRAUDCTL_LOG_FORMAT", "json");
    let out = run(&mut load);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        explain(&load, &out, "exit 4")
    );
    let last = json_lines(&out.stderr).pop().unwrap();
    assert_eq!(
        (&last["level"], &last["exit_code"]),
        (&Value::from("ERROR"), &Value::from(4))
    );
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("scored.jsonl does not exist"),
        "{last:?}"
    );

    let stderr = fails(dir.stage("extract").env("FRAUDCTL_LOG_FORMAT", "yaml"), 5);
    assert!(
        stderr.contains("FRAUDCTL_LOG_FORMAT=\"yaml\" is not a log format: use text or json"),
        "{stderr}"
    );
}

#[test]
fn a_long_stage_logs_its_progress_and_a_short_one_nothing_extra() {
    let logs = |interval: Option<&str>| {
        let mut cmd = RunDir::new().stage("extract");
        cmd.arg("--from-csv").arg(sample_csv());
        if let Some(ms) = interval {
            cmd.env("FRAUDCTL_PROGRESS_INTERVAL_MS", ms);
        }
        let out = run(&mut cmd);
        assert!(out.status.success(), "{}", explain(&cmd, &out, "failed"));
        String::from_utf8(out.stderr).unwrap()
    };
    // Every millisecond: the sample takes longer than that, so it logs its progress.
    let progress: Vec<String> = logs(Some("1"))
        .lines()
        .filter(|l| l.contains(" progress "))
        .map(str::to_string)
        .collect();
    assert!(!progress.is_empty(), "no progress line");
    for line in &progress {
        assert!(
            line.contains("stage=\"extract\"")
                && line.contains(" records=")
                && line.contains(" rate="),
            "{line}"
        );
    }
    // The default (a line every 5 s): the sample is done before the first.
    assert!(!logs(None).contains(" progress "));
    assert!(!logs(Some("0")).contains(" progress "), "0: never");
}

/// A digest for a day the stack never saw (a first `make up` mails the morning's report of a day
/// before it existed) says so, and the digest DAG sends none: the report's `seen`.
#[test]
fn a_report_says_whether_the_pipeline_saw_its_day() {
    let db = TestDb::new();
    let report = |day: &str, format: &str| db.report(day, format);
    let seen = |day: &str| -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(&report(day, "json")).unwrap()["summary"]["seen"]
            .clone()
    };
    assert_eq!(seen("2026-11-29"), false, "an empty database saw no day");
    assert!(report("2026-11-29", "table").contains("the pipeline never saw this day"));
    // A payment stamped with the day but captured after it (a new stack's stream): not seen.
    let ok_insert = |sql: &str| db.client().batch_execute(sql).unwrap();
    ok_insert(
        "INSERT INTO payments_scored (trans_num, trans_time, cc_last4, cc_hash, merchant, category,
             amt, gender, city, state, city_pop, merch_lat, merch_long, fraud_probability,
             predicted_fraud, threshold, model_version, scorer, run_id, captured_at)
         VALUES ('t-late', '2026-11-28 12:00+00', '4242', 'h', 'm', 'c', 1, 'F', 'x', 'NY', 1,
                 0, 0, 0.1, false, 0.5, 'v', 'local', 'r', '2026-11-29 00:30+00')",
    );
    assert_eq!(seen("2026-11-28"), false, "captured after the day ended");
    assert_eq!(seen("2026-11-29"), true, "captured before the day ended");
    ok_insert("DELETE FROM payments_scored");
    db.client()
        .execute(
            "INSERT INTO pipeline_runs (run_id, stage, records, recorded_at)
             VALUES ('scheduled__2026-11-29T23:59', 'load', 0, '2026-11-29 23:59:00+00')",
            &[],
        )
        .unwrap();
    assert_eq!(
        seen("2026-11-28"),
        false,
        "a run recorded later saw no earlier day"
    );
    assert_eq!(
        seen("2026-11-29"),
        true,
        "a run before its end, even with no payment"
    );
    assert_eq!(
        seen("2026-11-30"),
        true,
        "a day after the stack's first run"
    );
    assert!(!report("2026-11-29", "table").contains("never saw"));
}
