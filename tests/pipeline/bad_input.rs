//! Inputs and settings no stage should take: refused with a reason naming the record, file or
//! setting, never a panic, in bounded memory.

use super::*;

#[test]
fn bad_records_from_a_csv_are_rejected_with_reasons() {
    let dir = RunDir::new();
    let mut text = std::fs::read_to_string(sample_csv()).unwrap();
    let lines: Vec<&str> = text.lines().take(4).collect();
    // Row 1 intact; row 2 with a float card number; row 3 with an amount of 10^12; row 1 again.
    let bad_card = lines[2].replacen(
        &lines[2].split(',').nth(2).unwrap().to_string(),
        "6.30423337322e11",
        1,
    );
    let huge = lines[3].replacen(",220.11,", ",1000000000000,", 1);
    text = [lines[0], lines[1], &bad_card, &huge, lines[1]].join("\n");
    let csv = dir.file("input.csv");
    std::fs::write(&csv, text).unwrap();
    let summary = ok(dir.stage("extract").arg("--from-csv").arg(&csv));
    assert_eq!(summary["records"], 1);
    let reasons: Vec<String> = dir
        .records("raw.rejected.jsonl")
        .iter()
        .map(|r| r["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons[0].contains("cc_num"), "{reasons:?}");
    assert!(reasons[1].contains("amt"), "{reasons:?}");
    assert!(reasons[2].contains("duplicate trans_num"), "{reasons:?}");
    let lines: Vec<String> = dir
        .records("raw.rejected.jsonl")
        .iter()
        .map(|r| {
            r["origin"]
                .as_str()
                .unwrap()
                .rsplit(' ')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(lines, ["3", "4", "5"], "each rejection names its CSV line");
}

#[test]
fn a_password_on_the_command_line_is_refused() {
    let stderr = fails(
        fraudctl().args([
            "report",
            "--database-url",
            "postgres://u:hunter2@127.0.0.1:1/x",
        ]),
        5,
    );
    assert!(
        stderr.contains("FRAUDCTL_DATABASE_URL") && !stderr.contains("hunter2"),
        "{stderr}"
    );
}

#[test]
fn unusable_inputs_are_refused_with_exit_4() {
    let dir = RunDir::new();
    ok(dir
        .stage("extract")
        .arg("--from-csv")
        .arg(sample_csv())
        .args(["--max-records", "10"]));
    // An unknown stage-file version.
    let raw = std::fs::read_to_string(dir.file("raw.jsonl")).unwrap();
    std::fs::write(
        dir.file("raw.jsonl"),
        raw.replacen("\"version\":1", "\"version\":2", 1),
    )
    .unwrap();
    let stderr = fails(
        dir.stage("transform")
            .arg("--feature-spec")
            .arg(default_model().join("feature_spec.json")),
        4,
    );
    assert!(stderr.contains("version 2"), "{stderr}");
    // A truncated stage file.
    let mut lines: Vec<&str> = raw.lines().collect();
    lines.pop();
    std::fs::write(dir.file("raw.jsonl"), lines.join("\n") + "\n").unwrap();
    let stderr = fails(
        dir.stage("transform")
            .arg("--feature-spec")
            .arg(default_model().join("feature_spec.json")),
        4,
    );
    assert!(stderr.contains("truncated"), "{stderr}");
    // A feature spec naming a feature transform does not know.
    std::fs::write(dir.file("raw.jsonl"), &raw).unwrap();
    let spec = dir.file("spec.json");
    std::fs::write(&spec, r#"{"schema":"fraudctl.feature_spec","version":1,"name":"x","time_zone":"UTC","blocks":[{"type":"numeric","features":["amt","velocity_24h"]}]}"#).unwrap();
    let stderr = fails(dir.stage("transform").arg("--feature-spec").arg(&spec), 4);
    assert!(
        stderr.contains("velocity_24h") && stderr.contains("spec.json"),
        "{stderr}"
    );
    // A stage run before its input exists names the stage to run.
    let empty = RunDir::new();
    let stderr = fails(&mut empty.stage("score"), 4);
    assert!(stderr.contains("fraudctl transform"), "{stderr}");
}

#[test]
fn a_stage_file_cut_in_its_last_line_is_refused_by_the_next_stage() {
    let db = TestDb::new();
    let dir = RunDir::new();
    features_from_sample(&dir, 50);
    ok(dir.stage("score").arg("--model-dir").arg(default_model()));
    let mut transform = dir.stage("transform");
    transform
        .arg("--feature-spec")
        .arg(default_model().join("feature_spec.json"));
    let mut score = dir.stage("score");
    score.arg("--model-dir").arg(default_model());
    let mut load = dir.stage("load");
    load.env("FRAUDCTL_DATABASE_URL", &db.url);
    for (file, mut next) in [
        ("raw.jsonl", transform),
        ("features.jsonl", score),
        ("scored.jsonl", load),
    ] {
        let path = dir.file(file);
        let whole = std::fs::read(&path).unwrap();
        // The last record without its closing brace and newline: the header's count still fits.
        std::fs::write(&path, &whole[..whole.len() - 2]).unwrap();
        let stderr = fails(&mut next, 4);
        assert!(
            stderr.contains("record 50 ends without its newline: the file is truncated"),
            "{file}: {stderr}"
        );
        std::fs::write(&path, &whole).unwrap();
    }
    assert_eq!(db.count("SELECT count(*) FROM payments_scored"), 0);
}

#[test]
fn settings_at_their_limits_are_refused_naming_the_setting_never_a_panic() {
    let dir = RunDir::new();
    let huge = "18446744073709551615";
    let cases: &[(&str, &str, &str)] = &[
        ("extract", "FRAUDCTL_MAX_SECONDS", huge),
        ("extract", "FRAUDCTL_POLL_INTERVAL_MS", huge),
        ("extract", "FRAUDCTL_REQUEST_TIMEOUT_SECS", huge),
        ("extract", "FRAUDCTL_API_RETRIES", huge),
        ("extract", "FRAUDCTL_API_MAX_BODY_BYTES", "0"),
        ("extract", "FRAUDCTL_MAX_LAG_SECS", huge),
        ("extract", "FRAUDCTL_MAX_RECORDS", "0"),
        ("extract", "FRAUDCTL_LOCK_TIMEOUT_SECS", huge),
        (
            "extract",
            "FRAUDCTL_API_URL",
            "127.0.0.1:18000/current-transactions",
        ),
        (
            "extract",
            "FRAUDCTL_API_URL",
            "ftp://127.0.0.1/current-transactions",
        ),
        ("extract", "FRAUDCTL_RUN_ID", ""),
        ("transform", "FRAUDCTL_RUN_ID", "run\u{1b}[2Jx"),
        (
            "extract",
            "FRAUDCTL_PAN_HASH_KEY",
            "abababababababababababababababababab",
        ),
        (
            "alert",
            "FRAUDCTL_REPORT_URL",
            "javascript:alert(document.cookie)",
        ),
        ("score", "FRAUDCTL_THRESHOLD", "NaN"),
        ("score", "FRAUDCTL_THRESHOLD", "1e400"),
        ("score", "FRAUDCTL_SAGEMAKER_MAX_ROWS", huge),
        ("score", "FRAUDCTL_SAGEMAKER_ATTEMPTS", "0"),
        ("score", "FRAUDCTL_SAGEMAKER_TIMEOUT_SECS", huge),
        ("load", "FRAUDCTL_LOAD_CONNECTIONS", "0"),
        ("alert", "FRAUDCTL_ALERT_MAX_AGE_HOURS", "4294967295"),
        ("alert", "FRAUDCTL_ALERT_MAX_EMAILS", "-1"),
        ("alert", "FRAUDCTL_SMTP_RETRIES", huge),
        ("serve-payments", "FRAUDCTL_SIM_ERROR_RATE", "NaN"),
        ("serve-payments", "FRAUDCTL_SIM_FRAUD_RATE", "2"),
        ("serve-payments", "FRAUDCTL_SIM_ROWS_PER_RESPONSE", huge),
        ("serve-payments", "FRAUDCTL_SIM_SLOW_MS", huge),
        ("serve-payments", "FRAUDCTL_SIM_THREADS", "0"),
    ];
    for (command, var, value) in cases {
        let mut cmd = fraudctl();
        cmd.arg(command).env(var, value);
        if *command != "serve-payments" {
            cmd.arg("--run-dir").arg(dir.path());
        }
        let stderr = fails(&mut cmd, 5);
        assert!(
            stderr.contains(var),
            "{command} with {var}={value}: {stderr}"
        );
    }
    // And on the command line: the flag is named.
    let stderr = fails(dir.stage("extract").args(["--max-seconds", huge]), 5);
    assert!(stderr.contains("--max-seconds"), "{stderr}");
}

/// The peak resident memory of a process (VmHWM), read from /proc while it runs; 0 once gone.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn a_huge_body_is_refused_unread_in_bounded_memory() {
    let huge = format!("\"{}\"", "9".repeat(50 << 20));
    let server = FixtureServer::sequence(vec![huge, ApiRow::recorded("after-huge").body()]);
    let dir = RunDir::new();
    let mut child = dir
        .stage("extract")
        .args([
            "--api-url",
            &server.url,
            "--retries",
            "0",
            "--poll-interval-ms",
            "0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        peak = peak.max(peak_rss_kib(child.id()));
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(child.wait().unwrap().success());
    assert!(
        peak > 0 && peak < 48 * 1024,
        "extract peaked at {peak} KiB for a 50 MB body"
    );
    let rejected = dir.records("raw.rejected.jsonl");
    assert_eq!(rejected.len(), 1);
    assert!(
        rejected[0]["reason"]
            .as_str()
            .unwrap()
            .contains("body larger than 1048576 bytes"),
        "{}",
        rejected[0]["reason"]
    );
    assert!(rejected[0]["body"].as_str().unwrap().chars().count() <= 4097);
    assert_eq!(
        dir.records("raw.jsonl").len(),
        1,
        "the next body is read as usual"
    );
}
