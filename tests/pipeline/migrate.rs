//! `fraudctl migrate`: repeatable, safe when run twice at once, and a fresh database set up.

use super::*;

#[test]
fn migrate_is_repeatable_and_safe_concurrently() {
    let db = TestDb::new();
    let children: Vec<_> = (0..2)
        .map(|_| {
            db.cmd("migrate")
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
    }
    let known = fraudctl::db::known_migrations().len() as i64;
    assert_eq!(
        db.count("SELECT count(*) FROM refinery_schema_history"),
        known
    );
    let again = ok(&mut db.cmd("migrate"));
    assert_eq!(again["applied"], serde_json::json!([]));
}

#[test]
fn a_fresh_database_is_created_and_the_time_zone_validated() {
    let db = TestDb::new();
    let url = format!("{}_new", db.url);
    let summary = ok(fraudctl()
        .args([
            "migrate",
            "--create-database",
            "--business-time-zone",
            "Europe/Paris",
        ])
        .env("FRAUDCTL_DATABASE_URL", &url));
    assert_eq!(summary["business_time_zone"], "Europe/Paris");
    let stderr = fails(
        fraudctl()
            .args(["migrate", "--business-time-zone", "Mars/Olympus"])
            .env("FRAUDCTL_DATABASE_URL", &url),
        5,
    );
    assert!(stderr.contains("Mars/Olympus"), "{stderr}");
    let mut admin = db.client();
    admin
        .batch_execute(&format!("DROP DATABASE {}_new WITH (FORCE)", db.name))
        .unwrap();
}
